package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/keygate/keygate/internal/duration"
)

// Load reads the file at path (none when empty), applies the environment
// (lookup is os.LookupEnv in production), normalizes header names and
// validates the result. Its error lists every problem found, each with
// the field's path.
func Load(path string, lookup func(string) (string, bool)) (Config, error) {
	cfg := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		if err := decode(path, "", data, &cfg); err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
	}
	if lookup != nil {
		if err := applyEnv(reflect.ValueOf(&cfg).Elem(), "KEYGATE", "", lookup); err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
	}
	cfg.normalize()
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// decode reads YAML strictly into cfg: an unknown field, a duration
// without a unit or a value of the wrong kind is an error naming the
// field and the line, as `source:line: path: problem`. Lists and maps in
// the document replace the defaults rather than merging into them.
func decode(source, base string, data []byte, cfg any) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return syntaxError(source, err)
	}
	if root.Kind == 0 { // empty document
		return nil
	}
	c := checker{source: source}
	c.walk(&root, reflect.TypeOf(cfg).Elem(), base)
	if len(c.errs) > 0 {
		return errors.Join(c.errs...)
	}
	clearReplaced(&root, reflect.ValueOf(cfg).Elem())
	if err := root.Decode(cfg); err != nil {
		return typeErrors(source, base, &root, err)
	}
	return nil
}

var durationType = reflect.TypeFor[time.Duration]()

// checker walks a YAML document against the Go type it is decoded into,
// before decoding: yaml.v3 reports unknown fields and bad values with Go
// type names and without the field's path.
type checker struct {
	source string
	errs   []error
}

func (c *checker) bad(n *yaml.Node, path, format string, a ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s:%d: %s: %s", c.source, n.Line, path, fmt.Sprintf(format, a...)))
}

// walk checks n as a value of type t at path. Durations are rewritten in
// place into Go's notation, so that yaml.v3 decodes "7d".
func (c *checker) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.DocumentNode {
		for _, ch := range n.Content {
			c.walk(ch, t, path)
		}
		return
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Tag == "!!null" {
		return
	}
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			c.bad(n, path, "must be a duration, e.g. 30s, 15m, 24h or 7d")
			return
		}
		d, err := duration.Parse(n.Value)
		if err != nil {
			c.bad(n, path, "%v", err)
			return
		}
		n.Value, n.Tag, n.Style = d.String(), "!!str", 0
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fields[k.Value]
			if !ok {
				c.bad(k, join(path, k.Value), "unknown field%s", suggest(k.Value, keysOf(fields)))
				continue
			}
			c.walk(v, f.Type, join(path, k.Value))
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, e := range n.Content {
			c.walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			c.walk(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))
		}
	}
}

// clearReplaced empties the maps a document sets, so that its entries
// replace the defaults' (plans: a file's plans are the plans).
func clearReplaced(root *yaml.Node, v reflect.Value) {
	doc := root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if doc.Kind != yaml.MappingNode || v.Kind() != reflect.Struct {
		return
	}
	fields := yamlFields(v.Type())
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if f, ok := fields[doc.Content[i].Value]; ok && f.Type.Kind() == reflect.Map {
			fv := v.FieldByIndex(f.Index)
			fv.Set(reflect.Zero(fv.Type()))
		}
	}
}

// yamlFields maps a struct's YAML names to its fields.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		if name := yamlName(f); name != "" {
			out[name] = f
		}
	}
	return out
}

func yamlName(f reflect.StructField) string {
	name := strings.Split(f.Tag.Get("yaml"), ",")[0]
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

func keysOf(m map[string]reflect.StructField) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

var (
	lineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	typeRE = regexp.MustCompile("^cannot unmarshal !!(\\w+) `(.*)` into (\\S+)$")
)

// syntaxError rewrites a yaml.v3 parse error as `source:line: problem`.
func syntaxError(source string, err error) error {
	if m := lineRE.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Errorf("%s:%s: %s", source, m[1], m[2])
	}
	return fmt.Errorf("%s: %s", source, strings.TrimPrefix(err.Error(), "yaml: "))
}

// typeErrors rewrites yaml.v3's type errors ("line 3: cannot unmarshal
// !!str `x` into int") as `source:3: path: "x" is not a whole number`.
func typeErrors(source, base string, root *yaml.Node, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return syntaxError(source, err)
	}
	var errs []error
	for _, e := range te.Errors {
		m := lineRE.FindStringSubmatch(e)
		if m == nil {
			errs = append(errs, fmt.Errorf("%s: %s", source, e))
			continue
		}
		line, _ := strconv.Atoi(m[1])
		msg := m[2]
		if t := typeRE.FindStringSubmatch(msg); t != nil {
			msg = fmt.Sprintf("%q is not %s", t[2], kindOf(t[3]))
		}
		if path := pathAtLine(root, line, base); path != "" {
			msg = path + ": " + msg
		}
		errs = append(errs, fmt.Errorf("%s:%d: %s", source, line, msg))
	}
	return errors.Join(errs...)
}

// kindOf says in words what a Go type named in a yaml.v3 error holds.
func kindOf(goType string) string {
	switch t := strings.TrimPrefix(goType, "*"); {
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["), strings.Contains(t, "."):
		return "a mapping of fields"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "a whole number"
	case t == "bool":
		return "true or false"
	case strings.HasPrefix(t, "float"):
		return "a number"
	}
	return "text"
}

// pathAtLine finds the dotted path of the value on line n.
func pathAtLine(node *yaml.Node, n int, prefix string) string {
	switch node.Kind {
	case yaml.DocumentNode:
		for _, c := range node.Content {
			if p := pathAtLine(c, n, prefix); p != "" {
				return p
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			path := join(prefix, k.Value)
			if p := pathAtLine(v, n, path); p != "" {
				return p
			}
			if k.Line == n || v.Line == n && v.Kind == yaml.ScalarNode {
				return path
			}
		}
	case yaml.SequenceNode:
		for i, c := range node.Content {
			if p := pathAtLine(c, n, fmt.Sprintf("%s[%d]", prefix, i)); p != "" {
				return p
			}
		}
	case yaml.ScalarNode:
		if node.Line == n {
			return prefix
		}
	}
	return ""
}

// suggest returns "; did you mean X?" for the known name closest to name,
// when it is close enough to be a typo.
func suggest(name string, known []string) string {
	best, bestD := "", 0
	for _, k := range known {
		d := editDistance(strings.ToLower(name), strings.ToLower(k))
		if best == "" || d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	if best == "" || bestD > max(2, len(name)/3) {
		return ""
	}
	return "; did you mean " + best + "?"
}

// editDistance is Levenshtein's distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
