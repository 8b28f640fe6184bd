package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/keygate/keygate/internal/duration"
)

// EnvConfigFile names the variable that holds the config file's path,
// read by the commands when --config is not given.
const EnvConfigFile = "KEYGATE_CONFIG"

// envNotSettings are KEYGATE_* variables that are not config fields but
// are still Keygate's: the tests' service addresses and the like.
var envNotSettings = []string{"KEYGATE_TEST_"}

// applyEnv walks cfg's fields by their YAML names. Scalars take the
// variable's text; lists, maps and optional sections take YAML (or JSON)
// text, checked as strictly as the file.
func applyEnv(v reflect.Value, prefix, path string, lookup func(string) (string, bool)) error {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag := yamlName(f)
		if tag == "" {
			continue
		}
		name := prefix + "_" + strings.ToUpper(tag)
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct {
			if err := applyEnv(fv, name, join(path, tag), lookup); err != nil {
				return err
			}
			continue
		}
		s, ok := lookup(name)
		if !ok {
			continue
		}
		if err := setFromString(name, join(path, tag), fv, s); err != nil {
			return err
		}
	}
	return nil
}

func setFromString(name, path string, fv reflect.Value, s string) error {
	switch {
	case fv.Type() == durationType:
		d, err := duration.Parse(s)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		fv.SetInt(int64(d))
	case fv.Kind() == reflect.String:
		fv.SetString(s)
	case fv.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%s: %q is not true or false", name, s)
		}
		fv.SetBool(b)
	case fv.Kind() == reflect.Int || fv.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %q is not a whole number", name, s)
		}
		fv.SetInt(n)
	default: // lists, maps, pointers to structs: YAML (JSON is YAML too)
		nv := reflect.New(fv.Type())
		if err := decode(name, path, []byte(s), nv.Interface()); err != nil {
			return err
		}
		fv.Set(nv.Elem())
	}
	return nil
}

// EnvNames lists every KEYGATE_* variable Keygate reads, sorted.
func EnvNames() []string {
	names := []string{EnvConfigFile}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := yamlName(f)
			if tag == "" {
				continue
			}
			name := prefix + "_" + strings.ToUpper(tag)
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, name)
				continue
			}
			names = append(names, name)
		}
	}
	walk(reflect.TypeFor[Config](), "KEYGATE")
	sort.Strings(names)
	return names
}

// UnknownEnv returns a warning for each KEYGATE_* variable in environ
// ("NAME=value" entries, as os.Environ gives them) that Keygate does not
// read, naming the closest variable it does: a misspelt
// KEYGATE_DATABASE_URI would otherwise be ignored without a word.
func UnknownEnv(environ []string) []string {
	known := EnvNames()
	isKnown := map[string]bool{}
	for _, k := range known {
		isKnown[k] = true
	}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "KEYGATE_") || isKnown[name] || ownVariable(name) {
			continue
		}
		out = append(out, name+" is not a Keygate setting and is ignored"+suggest(name, known))
	}
	sort.Strings(out)
	return out
}

func ownVariable(name string) bool {
	for _, p := range envNotSettings {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
