// Package strictjson reads JSON exactly. Go's decoder alone matches keys case-insensitively, lets the last
// of two equal keys win, and replaces invalid UTF-8, so that {"user":"bob","USER":"alice"} reads as alice:
// an application that merges a client's JSON into its call to the verifier could be steered to another
// user, and two readers of one ConfigMap could disagree on what it says. Unmarshal refuses all of that.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// Unmarshal decodes raw, exactly one JSON value, into the value v points to, as json.Unmarshal with unknown
// fields disallowed does, and refuses besides: invalid UTF-8; in every object read into a struct (nested
// ones too), a key not spelled exactly as one of the struct's json names, or given twice; and anything after
// the value. Errors name the offending key and its path, never a value.
func Unmarshal(raw []byte, v any) error {
	if !utf8.Valid(raw) {
		return errors.New("not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := exact(dec, reflect.TypeOf(v).Elem(), ""); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("more than one JSON value")
	}
	strict := json.NewDecoder(bytes.NewReader(raw))
	strict.DisallowUnknownFields()
	if err := strict.Decode(v); err != nil {
		return fmt.Errorf("not valid JSON for its fields: %w", err)
	}
	return nil
}

var unmarshaler = reflect.TypeFor[json.Unmarshaler]()

// exact reads the next value from dec. Where t is a struct (that decodes itself from no other JSON), the
// value must be an object (null only for a pointer) whose keys are t's json names, exactly and once each,
// recursively.
func exact(dec *json.Decoder, t reflect.Type, path string) error {
	nullable := t.Kind() == reflect.Pointer
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(unmarshaler) {
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return invalid(err)
		}
		return nil
	}
	tok, err := dec.Token()
	if err != nil {
		return invalid(err)
	}
	if tok == nil && nullable { // null leaves the pointer nil, as Go's decoder does
		return nil
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("%s is not a JSON object", where(path))
	}
	fields := fieldsOf(t)
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return invalid(err)
		}
		key, _ := tok.(string)
		field, known := fields[key]
		switch {
		case !known:
			return fmt.Errorf("unknown field %q in %s (fields are %s, spelled exactly)", join(path, key), where(path), names(fields))
		case seen[key]:
			return fmt.Errorf("field %q appears more than once", join(path, key))
		}
		seen[key] = true
		if err := exact(dec, field, join(path, key)); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return invalid(err)
	}
	return nil
}

// fieldCache caches jsonFields by type: a verifier reads every request body into the same few structs.
var fieldCache sync.Map // reflect.Type -> map[string]reflect.Type, never changed once stored

// fieldsOf is jsonFields(t), computed once per type.
func fieldsOf(t reflect.Type) map[string]reflect.Type {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]reflect.Type)
	}
	f, _ := fieldCache.LoadOrStore(t, jsonFields(t))
	return f.(map[string]reflect.Type)
}

// jsonFields returns the json names of struct t's fields with their types, embedded structs' fields inlined
// as encoding/json inlines them.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" || (!f.IsExported() && !f.Anonymous):
		case name == "" && f.Anonymous && f.Type.Kind() == reflect.Struct:
			for k, v := range jsonFields(f.Type) {
				out[k] = v
			}
		case name == "":
			out[f.Name] = f.Type
		default:
			out[name] = f.Type
		}
	}
	return out
}

func invalid(err error) error { return fmt.Errorf("not valid JSON: %w", err) }

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func where(path string) string {
	if path == "" {
		return "the body"
	}
	return fmt.Sprintf("%q", path)
}

func names(fields map[string]reflect.Type) string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return strings.Join(keys, ", ")
}
