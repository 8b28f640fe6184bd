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
	_, err := loadKeygateConfigEnv(data, nil)
	return err
}

// loadKeygateConfigEnv loads a keygate.yaml with env as the environment
// (KEYGATE_* overrides), as the server started with it would.
func loadKeygateConfigEnv(data []byte, env map[string]string) (config.Config, error) {
	dir, err := os.MkdirTemp("", "keygate-config-")
	if err != nil {
		return config.Config{}, err
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "keygate.yaml")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return config.Config{}, err
	}
	var lookup func(string) (string, bool)
	if env != nil {
		lookup = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	}
	cfg, err := config.Load(p, lookup)
	if err != nil {
		return config.Config{}, fmt.Errorf("keygate.yaml: %w", err)
	}
	return cfg, nil
}
