package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/duration"
)

// maxBody bounds a request body; the largest real one (an import) is a
// few hundred bytes.
const maxBody = 1 << 20

// durationText is a duration in a JSON body, written as the config file
// and the CLI write them ("30d", "1h30m"); parse names the field in errors.
type durationText string

func (d durationText) parse(field string) (time.Duration, error) {
	if d == "" {
		return 0, nil
	}
	v, err := duration.Parse(string(d))
	if err != nil {
		return 0, invalid(field, "%v", err)
	}
	return v, nil
}

// decode reads one JSON object into v, a pointer to a struct. On a bad
// body it answers 400 (413 when too large) with a message that names the
// field in the API's words, never Go's, and reports false. An empty body
// is accepted when optional.
func decode(w http.ResponseWriter, r *http.Request, v any, optional bool) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == io.EOF && optional {
		return true
	}
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			err = errors.New("more than one JSON value")
		}
	}
	if err == nil {
		return true
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, "invalid_request", fmt.Sprintf("body: larger than %d bytes", tooLarge.Limit))
		return false
	}
	writeError(w, http.StatusBadRequest, "invalid_request", decodeMessage(err, reflect.TypeOf(v).Elem()))
	return false
}

// decodeMessage says what is wrong with a body that t could not be
// decoded from.
func decodeMessage(err error, t reflect.Type) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return "body: empty; send a JSON object"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "body: the JSON ends too soon"
	case errors.As(err, &syntax):
		return fmt.Sprintf("body: not valid JSON at byte %d: %s", syntax.Offset, strings.TrimPrefix(syntax.Error(), "json: "))
	case errors.As(err, &typ):
		if typ.Field == "" {
			return "body: must be a JSON object"
		}
		want := typ.Type
		if ft, ok := fieldType(t, typ.Field); ok {
			want = ft // a list's field, not its element
		}
		return fmt.Sprintf("%s: must be %s", typ.Field, describe(want))
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fmt.Sprintf("%s: unknown field (known: %s)", strings.Trim(name, `"`), strings.Join(jsonFields(t), ", "))
	}
	return "body: " + strings.TrimPrefix(err.Error(), "json: ")
}

// fieldType finds the type of the field at a dotted JSON path in t.
func fieldType(t reflect.Type, path string) (reflect.Type, bool) {
	for name := range strings.SplitSeq(path, ".") {
		if t.Kind() != reflect.Struct {
			return nil, false
		}
		found := false
		for i := range t.NumField() {
			f := t.Field(i)
			if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag == name {
				t, found = f.Type, true
				break
			}
		}
		if !found {
			return nil, false
		}
	}
	return t, true
}

// jsonFields lists the JSON names of t's fields.
func jsonFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	return out
}

var durationTextType = reflect.TypeFor[durationText]()

// describe names a JSON value of type t for a person.
func describe(t reflect.Type) string {
	if t == durationTextType {
		return `a duration string such as "30d", "12h" or "1h30m"`
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list of " + plural(describe(t.Elem()))
	case reflect.Map:
		return "an object of " + plural(describe(t.Elem()))
	case reflect.Struct:
		return "an object"
	}
	return "a different JSON type"
}

// plural turns "a string" into "strings".
func plural(s string) string {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "a "), "an ")
	switch s {
	case "true or false":
		return "booleans"
	case "whole number":
		return "whole numbers"
	}
	return s + "s"
}
