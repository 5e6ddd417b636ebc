package strictjson

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// request is the shape of the verifier's code requests.
type request struct {
	User string `json:"user"`
	Code string `json:"code"`
}

// nested is the shape of a resolved policy: objects within the object.
type nested struct {
	Mode    string `json:"mode"`
	Lockout struct {
		MaxFailures int32 `json:"maxFailures"`
	} `json:"lockout"`
	TOTP *struct {
		Digits int32 `json:"digits"`
	} `json:"totp"`
	Methods []string `json:"methods"`
}

var seeds = []string{
	`{"user":"alice","code":"123456"}`,
	`{"user":"bob","USER":"alice","code":"000000"}`,
	`{"user":"bob","code":"000000","user":"alice"}`,
	`{"User":"alice"}`,
	`{"user":"alice"} {}`,
	`{"user":"alice"} x`,
	"{\"user\":\"al\xffice\"}",
	`{"user":"alice\udc00"}`,
	`{"user":"\u202ealice"}`,
	`{"user":1}`,
	`[]`,
	`null`,
	``,
	`{"user":"alice","code":"1","method":"TOTP"}`,
}

func TestRequestBodiesAreReadExactly(t *testing.T) {
	for _, tt := range []struct {
		body string
		ok   bool
	}{
		{`{"user":"alice","code":"123456"}`, true},
		{` {"code":"1" , "user":"bob"} `, true},
		{`{"user":"bob","USER":"alice","code":"000000"}`, false},
		{`{"user":"bob","code":"000000","user":"alice"}`, false},
		{`{"User":"alice","code":"1"}`, false},
		{`{"user":"alice"} {}`, false},
		{`{"user":"alice"} x`, false},
		{"{\"user\":\"al\xffice\"}", false},
		{`{"user":1}`, false},
		{`[]`, false},
		{`null`, false},
		{``, false},
		{`{"user":"alice","code":"1","method":"TOTP"}`, false},
	} {
		var req request
		if err := Unmarshal([]byte(tt.body), &req); (err == nil) != tt.ok {
			t.Errorf("%s: accepted %v (%v), want %v", tt.body, err == nil, err, tt.ok)
		}
	}
}

// Objects within the object are read as exactly as the outer one: the verifier's policy ConfigMap has them.
func TestNestedObjectsAreReadExactly(t *testing.T) {
	for _, tt := range []struct {
		body, wantErr string
	}{
		{`{"mode":"Enforced","lockout":{"maxFailures":3},"totp":{"digits":6},"methods":["TOTP"]}`, ""},
		{`{"mode":"Enforced","totp":null}`, ""},
		{`{"lockout":{"maxFailures":3,"MaxFailures":100}}`, `unknown field "lockout.MaxFailures"`},
		{`{"lockout":{"maxFailures":100,"maxFailures":3}}`, `duplicate field "lockout.maxFailures"`},
		{`{"totp":{"digits":6,"skew":9}}`, `unknown field "totp.skew"`},
		{`{"lockout":[]}`, `lockout`},
		{`{"lockout":null}`, ""}, // absent, as Go reads it
		{`null`, `the body is not a JSON object`},
	} {
		var n nested
		err := Unmarshal([]byte(tt.body), &n)
		if (tt.wantErr == "" && err != nil) || (tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr))) {
			t.Errorf("%s: error %v, want %q", tt.body, err, tt.wantErr)
		}
	}
}

// Whatever the body, Unmarshal accepts only exact JSON: valid UTF-8, the known keys each at most once and
// spelled exactly; and what it accepts, Go's own decoder reads the same way.
// Longer run: go test -run '^$' -fuzz FuzzUnmarshal -fuzztime 1m ./internal/strictjson
func FuzzUnmarshal(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var req request
		if err := Unmarshal([]byte(body), &req); err != nil {
			return
		}
		if !utf8.ValidString(body) {
			t.Fatalf("accepted invalid UTF-8: %q", body)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(body), &m); err != nil || m == nil {
			t.Fatalf("accepted what Go cannot read as an object: %q: %v", body, err)
		}
		for k := range m {
			if k != "user" && k != "code" {
				t.Fatalf("accepted key %q: %q", k, body)
			}
		}
		var user string
		if raw, ok := m["user"]; ok && json.Unmarshal(raw, &user) == nil && user != req.User {
			t.Fatalf("read user %q where the body says %q: %q", req.User, user, body)
		}
	})
}
