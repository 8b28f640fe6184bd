package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/secretscan"
)

func newSecretScanningCmd(e env) *cobra.Command {
	c := group("secret-scanning", "what to register with GitHub's secret scanning partner program",
		`GitHub's secret scanning finds keys in public code and sends them to
POST `+secretscan.Path+` on portal.addr (with secret_scanning.enabled), where
Keygate revokes them (secret_scanning.action: revoke) or only tells
(notify). GitHub needs a regular expression per key format to look for.`)
	c.AddCommand(newSecretScanningPatternCmd(e))
	return c
}

// patternView is one key format's pattern as --json prints it.
type patternView struct {
	Prefix       string `json:"prefix"`
	Env          string `json:"env"`
	Checksum     bool   `json:"checksum"`
	Pattern      string `json:"pattern"`
	Boundary     string `json:"boundary"`
	ChecksumRule string `json:"checksum_rule,omitempty"`
}

func newSecretScanningPatternCmd(e env) *cobra.Command {
	c := &cobra.Command{
		Use:   "pattern",
		Short: "print, for each key format, the regular expression to register with GitHub",
		Long: `Print, for each configured key format, the regular expression that finds its
keys (prefix, alphabet, length), the characters that may not touch a match,
and how the checksum is made, to send to GitHub (secret-scanning@github.com)
with the URL of POST ` + secretscan.Path + ` on portal.addr.`,
		Example: `  keygate secret-scanning pattern
  keygate secret-scanning pattern --json`,
		Args: noArgs,
	}
	cfgPath := configFlag(c, e)
	asJSON := jsonFlag(c)
	c.RunE = func(*cobra.Command, []string) error {
		cfg, _, err := loadConfig(cfgPath(), e)
		if err != nil {
			return err
		}
		fs, err := keys.NewFormats(cfg.Formats())
		if err != nil {
			return err
		}
		var vs []patternView
		for _, f := range fs.List() {
			v := patternView{Prefix: f.Prefix, Env: string(f.Env), Checksum: f.Checksum, Pattern: f.Pattern(), Boundary: keys.PatternBoundary}
			if f.Checksum {
				v.ChecksumRule = keys.ChecksumRule
			}
			vs = append(vs, v)
		}
		if *asJSON {
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(vs)
		}
		for i, v := range vs {
			if i > 0 {
				fmt.Fprintln(e.stdout)
			}
			fmt.Fprintf(e.stdout, "Key format %s (%s keys)\n", v.Prefix, v.Env)
			fmt.Fprintf(e.stdout, "  regular expression:  %s\n", v.Pattern)
			fmt.Fprintf(e.stdout, "  before and after:    %s\n", v.Boundary)
			if v.Checksum {
				fmt.Fprintf(e.stdout, "  checksum:            %s\n", v.ChecksumRule)
			} else {
				fmt.Fprintln(e.stdout, "  checksum:            none (keys imported from elsewhere): every token of this shape is reported, real or not")
			}
		}
		return nil
	}
	return c
}
