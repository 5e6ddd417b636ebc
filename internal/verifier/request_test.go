package verifier

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/kube2fa/kube2fa/internal/enrollment"
)

var bodySeeds = []string{
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
		{``, false},
		{`{"user":"alice","code":"1","method":"TOTP"}`, false},
	} {
		var req codeRequest
		if err := parseBody([]byte(tt.body), &req); (err == nil) != tt.ok {
			t.Errorf("%s: accepted %v (%v), want %v", tt.body, err == nil, err, tt.ok)
		}
	}
}

// Whatever the body, parseBody accepts only exact JSON: valid UTF-8, the known keys each at most once and
// spelled exactly; and what it accepts, Go's own decoder reads the same way.
func FuzzParseBody(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var req codeRequest
		if err := parseBody([]byte(body), &req); err != nil {
			return
		}
		if !utf8.ValidString(body) {
			t.Fatalf("accepted invalid UTF-8: %q", body)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(body), &m); err != nil {
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

// No user the verifier serves is one the CRD would refuse, and none holds what makes users look alike.
func FuzzValidUser(f *testing.F) {
	for _, s := range []string{"alice", "ALICE", "名前", "alice\u202e", "a\x00b", "\xff", "", "\uFFFD"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, user string) {
		if enrollment.ValidUser(user) != nil {
			return
		}
		if !utf8.ValidString(user) || user == "" || utf8.RuneCountInString(user) > enrollment.MaxUserLength {
			t.Fatalf("accepted %q", user)
		}
		for _, r := range user {
			if r < 0x20 || (r >= 0x7F && r <= 0x9F) || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) ||
				r == 0x200E || r == 0x200F || r == utf8.RuneError {
				t.Fatalf("accepted %q holding %U", user, r)
			}
		}
	})
}
