// Package strictjson reads JSON exactly. Go's decoder alone matches keys case-insensitively, lets the last
// of two equal keys win, and replaces invalid UTF-8, so that {"user":"bob","USER":"alice"} reads as alice:
// an application that merges a client's JSON into its call to the verifier could be steered to another
// user, and two readers of one ConfigMap could disagree on what it says. Unmarshal refuses all of that.
package strictjson

import (
	"bytes"
	"errors"
	"fmt"
	"unicode/utf8"

	"sigs.k8s.io/json"
)

// Unmarshal decodes raw, exactly one JSON object, into the struct v points to, as json.Unmarshal with
// unknown fields disallowed does, and refuses besides: invalid UTF-8; in every object read into a struct
// (nested ones too), a key not spelled exactly as one of the struct's json names, or given twice; and
// anything after the object. A null where a nested object is due reads as Go reads it, as absent. Errors
// name the offending key and its path, never a value.
//
// The reading is the Kubernetes API server's own strict one (sigs.k8s.io/json): one pass, case-sensitive,
// every unknown or repeated key reported with its path.
func Unmarshal(raw []byte, v any) error {
	if !utf8.Valid(raw) {
		return errors.New("not valid UTF-8")
	}
	if body := bytes.TrimLeft(raw, " \t\r\n"); len(body) == 0 || body[0] != '{' {
		return errors.New("the body is not a JSON object")
	}
	strict, err := json.UnmarshalStrict(raw, v, json.DisallowDuplicateFields, json.DisallowUnknownFields)
	switch {
	case err != nil:
		return fmt.Errorf("not valid JSON for its fields: %w", err)
	case len(strict) > 0:
		return errors.Join(strict...) // unknown field "lockout.MaxFailures", duplicate field "user"
	}
	return nil
}
