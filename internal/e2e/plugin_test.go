package e2e_test

import (
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	potp "github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/kube2fa/kube2fa/internal/enrollment"
	"github.com/kube2fa/kube2fa/internal/plugin"
	"github.com/kube2fa/kube2fa/internal/qrscan"
	"github.com/kube2fa/kube2fa/internal/testenv"
)

// kubectl2fa runs `kubectl 2fa args...` through kubectl's plugin discovery (flags after the plugin's name,
// as kubectl requires), with stdin, and returns its output and exit code.
func kubectl2fa(t *testing.T, stdin string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "kubectl", append(append([]string{"2fa"}, args...), "--kubeconfig="+cluster.Kubeconfig)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	case err != nil:
		t.Fatalf("kubectl 2fa %s: %v", strings.Join(args, " "), err)
	}
	return string(out), 0
}

// The helpdesk's flows of README with `kubectl 2fa`: the grid, a user's state, unlock, reset.
func TestTheHelpdeskFlowsWithTheKubectlPlugin(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, policy("Enforced", "  totp: {skewSteps: 3}\n"))
	kubectl(t, "wait", "-n", ns, "--for=condition=Ready", "--timeout=60s", "tfp/webapp")
	vs := startVerifiers(t, ns, "webapp", 1)
	a := vs[0]
	phone := alicesPhone(t, a, a)

	testenv.Eventually(t, "the policy to count alice", func() bool {
		out, code := kubectl2fa(t, "", "status", "-n", ns)
		return code == 0 && strings.Contains(out, "webapp   Enforced   TOTP      1          0         0        1       True")
	})

	// Three wrong codes lock her until an administrator unlocks.
	for _, c := range []string{"000000", "000001", "000002"} {
		a.verify(t, "alice", c)
	}
	out, code := kubectl2fa(t, "", "status", "alice", "-n", ns)
	for _, want := range []string{"alice under policy webapp", "Enrolled:              yes, TOTP, since",
		"until an administrator unlocks (kubectl 2fa unlock alice)", "Failures:              3, the last at", "Recovery codes left:   10"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("kubectl 2fa status alice (exit %d) lacks %q:\n%s", code, want, out)
		}
	}

	if out, code := kubectl2fa(t, "", "unlock", "alice", "-n", ns); code != 0 || !strings.Contains(out, "alice unlocked under policy webapp") {
		t.Fatalf("unlock (exit %d): %s", code, out)
	}
	if res := a.verify(t, "alice", phone.code(1)); res.Status != 200 {
		t.Fatalf("after the unlock: %v", res)
	}
	out, code = kubectl2fa(t, "", "status", "alice", "-n", ns, "-o", "json")
	var st []plugin.UserStatus
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || len(st) != 1 || st[0].Locked ||
		st[0].FailedAttempts != 0 || st[0].LastSuccessAt == nil || st[0].State != "Confirmed" {
		t.Fatalf("status -o json after the unlock (exit %d, %v): %s", code, err, out)
	}

	// Scripts tell a user without an enrollment by the exit code.
	if out, code := kubectl2fa(t, "", "status", "bob", "-n", ns); code != plugin.ExitNotFound {
		t.Fatalf("status of a user without an enrollment: exit %d: %s", code, out)
	}

	// Reset asks first; declined, nothing happens.
	if out, code := kubectl2fa(t, "n\n", "reset", "alice", "-n", ns); code != plugin.ExitError || !strings.Contains(out, "nothing deleted") {
		t.Fatalf("a declined reset (exit %d): %s", code, out)
	}
	if res := a.verify(t, "alice", phone.code(2)); res.Status != 200 {
		t.Fatalf("after a declined reset: %v", res)
	}
	// Confirmed, it returns once the key is gone; alice must enroll again.
	if out, code := kubectl2fa(t, "y\n", "reset", "alice", "-n", ns); code != 0 || !strings.Contains(out, "alice reset under policy webapp") {
		t.Fatalf("reset (exit %d): %s", code, out)
	}
	testenv.Eventually(t, "the verifier to ask alice to enroll again", func() bool {
		return a.verify(t, "alice", phone.code(3)).result() == "enrollment_required"
	})
}

// An administrator enrolls carol under a policy closed to self-enrollment: `kubectl 2fa enroll` prints a QR
// code that scans (from the terminal's text, as a phone would) into her key; `kubectl 2fa qr` shows it again
// while pending and never after carol confirmed with a code computed from what was scanned.
func TestAnAdministratorEnrollsAUserWithTheKubectlPlugin(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, policy("Enforced", "  selfEnrollment: {mode: AdminOnly}\n"))
	kubectl(t, "wait", "-n", ns, "--for=condition=Ready", "--timeout=60s", "tfp/webapp")
	a := startVerifiers(t, ns, "webapp", 1)[0]

	out, code := kubectl2fa(t, "", "enroll", "carol", "--policy", "webapp", "-n", ns)
	if code != 0 || !strings.Contains(out, "Key: ") {
		t.Fatalf("enroll (exit %d): %s", code, out)
	}
	uri, err := qrscan.Terminal(out)
	if err != nil || !strings.Contains(out, "URI: "+uri) {
		t.Fatalf("the printed QR code does not scan into the printed URI (%v):\n%s", err, out)
	}
	again, code := kubectl2fa(t, "", "qr", "carol", "-n", ns)
	if scanned, err := qrscan.Terminal(again); code != 0 || err != nil || scanned != uri {
		t.Fatalf("qr while pending (exit %d, %v): %s", code, err, again)
	}

	key, err := potp.NewKeyFromURL(uri)
	if err != nil {
		t.Fatal(err)
	}
	first, err := totp.GenerateCode(key.Secret(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res := a.confirm(t, "carol", first); res.Status != 200 || res.result() != "confirmed" {
		t.Fatalf("confirming with the scanned key: %v", res)
	}
	if out, code := kubectl2fa(t, "", "qr", "carol", "-n", ns); code != plugin.ExitError || !strings.Contains(out, "is confirmed") || strings.Contains(out, key.Secret()) {
		t.Fatalf("qr after confirmation (exit %d): %s", code, out)
	}
	if out, code := kubectl2fa(t, "", "enroll", "dave", "-n", ns); code != plugin.ExitError || !strings.Contains(out, "--policy is required") {
		t.Fatalf("enroll without --policy (exit %d): %s", code, out)
	}

	// Her key Secret is lost (deleted by hand): codes are refused until the helpdesk reissues a key, which
	// the plugin prints as enroll does, and she confirms anew.
	if out, code := kubectl2fa(t, "", "reissue", "carol", "-n", ns); code != plugin.ExitError || !strings.Contains(out, "nothing to reissue") {
		t.Fatalf("reissue of a key in place (exit %d): %s", code, out)
	}
	ue := enrollment.Name("webapp", "carol")
	kubectl(t, "delete", "secret", ue+"-otp", "-n", ns)
	kubectl(t, "wait", "-n", ns, "--for=condition=Ready=false", "--timeout=30s", "ue/"+ue)
	out, code = kubectl2fa(t, "", "reissue", "carol", "-n", ns)
	reissued, err := qrscan.Terminal(out)
	if code != 0 || err != nil || reissued == uri {
		t.Fatalf("reissue (exit %d, %v): %s", code, err, out)
	}
	key, err = potp.NewKeyFromURL(reissued)
	if err != nil {
		t.Fatal(err)
	}
	first, err = totp.GenerateCode(key.Secret(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "carol to confirm her reissued key", func() bool { return a.confirm(t, "carol", first).Status == 200 })
}
