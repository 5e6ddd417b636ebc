package verifier

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"
)

// parseBody decodes raw, one JSON object, into the struct into points to, exactly: raw is valid UTF-8, every
// key is spelled as one of the struct's json tags and appears once, and nothing follows the object. Go's
// decoder alone matches keys case-insensitively and lets the last of two equal keys win, so that
// {"user":"bob","USER":"alice"} would check alice's code; an application that merges a client's JSON into its
// call could be steered to another user.
func parseBody(raw []byte, into any) error {
	if !utf8.Valid(raw) {
		return errors.New("request body is not valid UTF-8")
	}
	known := jsonKeys(into)
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errors.New("request body is not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("request body is not valid JSON: %w", err)
		}
		key, _ := tok.(string)
		switch {
		case !known[key]:
			return fmt.Errorf("unknown field %q (fields are %s, spelled exactly)", key, strings.Join(sortedKeys(known), ", "))
		case seen[key]:
			return fmt.Errorf("field %q appears more than once", key)
		}
		seen[key] = true
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return fmt.Errorf("request body is not valid JSON: %w", err)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return fmt.Errorf("request body is not valid JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("request body holds more than one JSON value")
	}
	strict := json.NewDecoder(bytes.NewReader(raw))
	strict.DisallowUnknownFields()
	if err := strict.Decode(into); err != nil {
		return fmt.Errorf("request body is not valid JSON: %w", err)
	}
	return nil
}

// jsonKeys returns the json names of the fields of the struct v points to.
func jsonKeys(v any) map[string]bool {
	t := reflect.TypeOf(v).Elem()
	keys := map[string]bool{}
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			keys[name] = true
		}
	}
	return keys
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
