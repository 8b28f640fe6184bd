package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/server"
)

func newVersionCmd(e env) *cobra.Command {
	c := &cobra.Command{
		Use:     "version",
		Short:   "print the version",
		Long:    "Print Keygate's version, commit, the Go version it was built with and its response encoder.",
		Example: "  keygate version --json",
		Args:    noArgs,
	}
	asJSON := jsonFlag(c)
	c.RunE = func(*cobra.Command, []string) error {
		b := server.ReadBuildInfo()
		if *asJSON {
			return json.NewEncoder(e.stdout).Encode(b)
		}
		v := "keygate " + b.Version
		if rev := b.Revision; rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			if b.Modified {
				rev += "+dirty"
			}
			v += " " + rev
		}
		fmt.Fprintf(e.stdout, "%s (%s, %s encoder)\n", v, b.Go, b.Encoder)
		return nil
	}
	return c
}
