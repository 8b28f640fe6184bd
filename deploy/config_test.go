package deploy

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/keygate/keygate/config"
)

// loadKeygateConfig loads a keygate.yaml the way the server does, with the
// real loader: unknown fields and bad values fail, naming the field.
func loadKeygateConfig(data []byte) error {
	dir, err := os.MkdirTemp("", "keygate-config-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "keygate.yaml")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return err
	}
	if _, err := config.Load(p, nil); err != nil {
		return fmt.Errorf("keygate.yaml: %w", err)
	}
	return nil
}
