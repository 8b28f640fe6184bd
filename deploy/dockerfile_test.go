package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, …
	args string
}

func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	s := bufio.NewScanner(bytes.NewReader(data))
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue // a comment inside a continued instruction
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	if cur.Len() != 0 {
		t.Fatalf("%s ends inside a continued line", path)
	}
	return out
}

// TestDockerfile checks the image's shape in place of a `docker build`,
// which needs an engine this machine has not: a Go builder matching
// go.mod, a static stripped build of ./cmd/keygate, a distroless (or
// scratch) final stage with a numeric non-root user, the server's ports,
// and the entrypoint the manifests rely on (they pass only args).
func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t, "../Dockerfile")
	var stages [][]instruction
	for _, in := range ins {
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("%s before the first FROM", in.cmd)
			}
			continue
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a final one", len(stages))
	}

	// Builder: golang at go.mod's Go version.
	build := stages[0]
	from := strings.Fields(build[0].args)
	if len(from) != 3 || !strings.EqualFold(from[1], "AS") {
		t.Fatalf("first stage %q: want FROM golang:<version> AS <name>", build[0].args)
	}
	image, stageName := from[0], from[2]
	goVersion := goModVersion(t)
	if want := "golang:" + goVersion; image != want && !strings.HasPrefix(image, want+"-") && !strings.HasPrefix(image, want+".") {
		t.Errorf("builder %s, want golang:%s (go.mod's go %s)", image, goVersion, goVersion)
	}
	var goBuild string
	for _, in := range build {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			goBuild = in.args
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-tags vtprotobuf", "-trimpath", "-s -w", "-o /keygate", "./cmd/keygate"} {
		if !strings.Contains(goBuild, want) {
			t.Errorf("go build %q lacks %q", goBuild, want)
		}
	}
	if !strings.Contains(goBuild, "-ldflags") {
		t.Errorf("go build %q has no -ldflags", goBuild)
	}

	// Final stage.
	final := stages[len(stages)-1]
	base := final[0].args
	if !regexp.MustCompile(`^(gcr\.io/distroless/static(-debian\d+)?:nonroot|scratch)$`).MatchString(base) {
		t.Errorf("final stage FROM %s: want distroless static nonroot or scratch", base)
	}
	got := map[string][]string{}
	for _, in := range final[1:] {
		got[in.cmd] = append(got[in.cmd], in.args)
	}
	if !slices.Contains(got["COPY"], "--from="+stageName+" /keygate /keygate") {
		t.Errorf("final stage COPY %v: want --from=%s /keygate /keygate", got["COPY"], stageName)
	}
	users := got["USER"]
	if len(users) == 0 {
		t.Error("final stage has no USER")
	} else {
		uid, _, _ := strings.Cut(users[len(users)-1], ":")
		if n, err := strconv.Atoi(uid); err != nil || n == 0 {
			t.Errorf("USER %s: want a numeric non-root uid (Kubernetes verifies runAsNonRoot by number)", users[len(users)-1])
		}
	}
	var exposed []string
	for _, e := range got["EXPOSE"] {
		exposed = append(exposed, strings.Fields(e)...)
	}
	for _, p := range []int{GRPCPort, HTTPPort, PortalPort} {
		if !slices.Contains(exposed, strconv.Itoa(p)) && !slices.Contains(exposed, strconv.Itoa(p)+"/tcp") {
			t.Errorf("EXPOSE %v lacks %d", exposed, p)
		}
	}
	execForm := func(cmd string, want ...string) {
		vs := got[cmd]
		if len(vs) != 1 {
			t.Errorf("%d %s instructions in the final stage, want 1", len(vs), cmd)
			return
		}
		var args []string
		if err := json.Unmarshal([]byte(vs[0]), &args); err != nil {
			t.Errorf("%s %s: not the exec (JSON) form: %v", cmd, vs[0], err)
			return
		}
		if !slices.Equal(args, want) {
			t.Errorf("%s %q, want %q", cmd, args, want)
		}
	}
	execForm("ENTRYPOINT", "/keygate")
	execForm("CMD", "serve")
}

// goModVersion is go.mod's go directive as major.minor.
func goModVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return string(m[1])
}

// TestDockerignore checks that the build context keeps everything the
// binary is built from: go.mod, go.sum, the directory of every package
// ./cmd/keygate imports from this module, and every embedded file.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf(".dockerignore: exception %q: extend ignored() to model it", line)
		}
		patterns = append(patterns, strings.Trim(filepath.Clean(line), "/"))
	}
	// ignored follows Docker's rules for these patterns: anchored at the
	// context root, and a matched directory takes its contents with it.
	ignored := func(rel string) bool {
		for p := rel; p != "." && p != "/" && p != ""; p = filepath.Dir(p) {
			for _, pat := range patterns {
				if ok, _ := filepath.Match(pat, p); ok {
					return true
				}
			}
		}
		return false
	}
	for _, f := range []string{"go.mod", "go.sum", "cmd/keygate/main.go"} {
		if ignored(f) {
			t.Errorf(".dockerignore drops %s", f)
		}
	}
	if !ignored(".git/HEAD") || !ignored("store.test") {
		t.Error(".dockerignore keeps .git or test binaries in the context")
	}

	// Module packages the binary imports, with their embedded files. Other
	// engineers' packages may be mid-edit: -e keeps going past their errors.
	cmd := exec.CommandContext(t.Context(), "go", "list", "-e", "-deps", "-f",
		`{{if .Module}}{{if .Module.Main}}{{.Dir}}{{range .EmbedFiles}} {{.}}{{end}}{{end}}{{end}}`, "./cmd/keygate")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		dir, err := filepath.Rel(root, fields[0])
		if err != nil {
			t.Fatal(err)
		}
		n++
		if ignored(filepath.Join(dir, "x.go")) {
			t.Errorf(".dockerignore drops package directory %s, which ./cmd/keygate imports", dir)
		}
		for _, f := range fields[1:] {
			if ignored(filepath.Join(dir, f)) {
				t.Errorf(".dockerignore drops %s, embedded by %s", filepath.Join(dir, f), dir)
			}
		}
	}
	if n == 0 {
		t.Fatal("go list found no packages of this module under ./cmd/keygate")
	}
}
