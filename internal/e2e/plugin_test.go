package e2e_test

import (
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/kube2fa/kube2fa/internal/plugin"
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
