package e2e_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/internal/enrollment"
	"github.com/kube2fa/kube2fa/internal/testenv"
)

// Flows 1-5 and 8 of the README's admin guide, one after the other, as a platform team and its users do them.
func TestEnforcedPolicyFromApplyToRecovery(t *testing.T) {
	ns := namespace(t)
	// 1. A platform team applies an Enforced TOTP policy and waits for it.
	apply(t, ns, policy("Enforced", "  totp: {skewSteps: 3}\n"))
	kubectl(t, "wait", "-n", ns, "--for=condition=Ready", "--timeout=60s", "tfp/webapp")
	if cm := kubectl(t, "get", "cm", "webapp-verifier", "-n", ns, "-o", "jsonpath={.data.policy\\.json}"); !strings.Contains(cm, `"mode":"Enforced"`) {
		t.Fatalf("verifier ConfigMap: %s", cm)
	}
	vs := startVerifiers(t, ns, "webapp", 2)
	a, b := vs[0], vs[1]
	if res := a.verify(t, "alice", "123456"); res.Status != 403 || res.result() != "enrollment_required" {
		t.Fatalf("before enrolling: %v", res)
	}

	// 2. alice enrolls through replica A and confirms through replica B.
	// Her enrollment's name is derived from the policy and the user; the USER column and the spec.user field
	// selector find it.
	phone, recoveryCodes := alicesPhoneAndCodes(t, a, b)
	ue := enrollment.Name("webapp", "alice")
	if out := kubectl(t, "get", "ue", "-n", ns, "--field-selector", "spec.user=alice"); !strings.Contains(out, ue+"   alice   webapp   TOTP     True       False") {
		t.Fatalf("kubectl get ue does not show alice enrolled:\n%s", out)
	}

	// 3. A code is accepted once; the same code on the other replica is a replay, refused and not counted.
	code := phone.code(1) // the same string twice: recomputed after a step boundary it would be a new code
	if res := a.verify(t, "alice", code); res.Status != 200 || res.result() != "accepted" {
		t.Fatalf("verify: %v", res)
	}
	if res := b.verify(t, "alice", code); res.Status != 401 || res.result() != "already_used" {
		t.Fatalf("replay on replica B: %v", res)
	}

	// 4. Three wrong codes lock her out (the replay was not one); an administrator unlocks her.
	a.verify(t, "alice", "999999")
	a.verify(t, "alice", "000000")
	b.verify(t, "alice", "000001")
	kubectl(t, "wait", "-n", ns, "--for=condition=Locked", "--timeout=30s", "ue/"+ue)
	if res := a.verify(t, "alice", phone.code(2)); res.Status != 429 || res.Header.Get("Retry-After") != "" {
		t.Fatalf("right code while locked until an administrator unlocks: %v", res)
	}
	kubectl(t, "annotate", "-n", ns, "ue", "--field-selector", "spec.user=alice", "twofactor.kube2fa.io/unlock=ticket-1")
	kubectl(t, "wait", "-n", ns, "--for=condition=Locked=false", "--timeout=30s", "ue/"+ue)
	testenv.Eventually(t, "replica B to accept alice after the unlock", func() bool { return b.verify(t, "alice", phone.code(2)).Status == 200 })

	// She loses her phone. A recovery code from her confirmation gets her in, once, on either replica.
	if len(recoveryCodes) != 10 {
		t.Fatalf("the confirmation gave %d recovery codes", len(recoveryCodes))
	}
	if res := b.post(t, "/v1/verify", map[string]string{"user": "alice", "recoveryCode": strings.ToLower(recoveryCodes[7])}); res.Status != 200 || res.Body["recoveryCodesRemaining"] != 9.0 {
		t.Fatalf("a recovery code: %v", res)
	}
	if res := a.post(t, "/v1/verify", map[string]string{"user": "alice", "recoveryCode": recoveryCodes[7]}); res.Status != 401 || res.result() != "already_used" {
		t.Fatalf("the same recovery code again: %v", res)
	}
	if left := kubectl(t, "get", "ue", ue, "-n", ns, "-o", "jsonpath={.status.recoveryCodesRemaining}"); left != "9" {
		t.Fatalf("recovery codes left: %q", left)
	}

	// 5. Recovery: deleting the enrollment takes her key with it (the real garbage collector).
	kubectl(t, "delete", "userenrollment", "--field-selector", "spec.user=alice", "-n", ns)
	testenv.Eventually(t, "alice's Secret to be garbage-collected", func() bool {
		_, err := cluster.Kubectl(ctx, "get", "secret", ue+"-otp", "-n", ns)
		return err != nil && strings.Contains(err.Error(), "NotFound")
	})
	testenv.Eventually(t, "verify to ask alice to enroll again", func() bool {
		return a.verify(t, "alice", phone.code(3)).result() == "enrollment_required"
	})
	// She enrolls her new phone; the old one, and the recovery codes of the old key, are worthless.
	newPhone, _ := alicesPhoneAndCodes(t, a, b)
	if res := a.verify(t, "alice", phone.code(3)); res.Status != 401 {
		t.Fatalf("the lost phone's code after re-enrolling: %v", res)
	}
	if res := b.post(t, "/v1/verify", map[string]string{"user": "alice", "recoveryCode": recoveryCodes[8]}); res.Status != 401 || res.result() != "rejected" {
		t.Fatalf("a recovery code of the old key: %v", res)
	}
	if res := b.verify(t, "alice", newPhone.code(1)); res.Status != 200 {
		t.Fatalf("the new phone: %v", res)
	}
	// A GitOps edit makes 2FA optional, then disables it.
	apply(t, ns, policy("Optional", "  totp: {skewSteps: 3}\n"), "--server-side", "--force-conflicts")
	testenv.Eventually(t, "Optional to apply", func() bool { return b.verify(t, "bob", "123456").result() == "not_required" })
	apply(t, ns, policy("Disabled", "  totp: {skewSteps: 3}\n"), "--server-side", "--force-conflicts")
	testenv.Eventually(t, "Disabled to refuse self-enrollment", func() bool {
		return a.post(t, "/v1/enrollments", map[string]string{"user": "carol"}).Status == 403
	})
	if res := a.verify(t, "alice", "123456"); res.result() != "not_required" {
		t.Fatalf("Disabled: %v", res)
	}

	// 8. Her key never appeared outside its Secret.
	assertNoKeyMaterial(t, ns, []authenticator{phone, newPhone}, a, b)
}

// alicesPhone enrolls alice through replica A, confirms through replica B, and waits until both replicas'
// watches have delivered the confirmation (milliseconds; until then A answers enrollment_required).
func alicesPhone(t *testing.T, a, b verifier) authenticator {
	t.Helper()
	phone, _ := alicesPhoneAndCodes(t, a, b)
	return phone
}

// alicesPhoneAndCodes is alicesPhone, with the recovery codes the confirmation gave her.
func alicesPhoneAndCodes(t *testing.T, a, b verifier) (authenticator, []string) {
	t.Helper()
	phone := handOver(t, a, b, "alice")
	res := b.confirm(t, "alice", phone.code(0))
	if res.Status != 200 || res.result() != "confirmed" {
		t.Fatalf("confirming through replica B: %v", res)
	}
	for _, v := range []verifier{a, b} {
		testenv.Eventually(t, v.Name+" to see alice confirmed", func() bool { return v.state(t, "alice") == "Confirmed" })
	}
	var codes []string
	for _, c := range res.Body["recoveryCodes"].([]any) {
		codes = append(codes, c.(string))
	}
	return phone, codes
}

func TestAThrottledLockEndsByItself(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, policy("Enforced", "  totp: {skewSteps: 2}\n  lockout: {maxFailures: 3, throttleSeconds: 3}\n"))
	kubectl(t, "wait", "-n", ns, "--for=condition=Ready", "--timeout=60s", "tfp/webapp")
	vs := startVerifiers(t, ns, "webapp", 2)
	phone := alicesPhone(t, vs[0], vs[1])
	var locked time.Time
	for i := range 3 {
		res := vs[i%2].verify(t, "alice", fmt.Sprintf("00000%d", i))
		if res.Status != 401 || res.Body["remainingAttempts"] != float64(2-i) {
			t.Fatalf("wrong code %d: %v", i+1, res)
		}
		locked = time.Now()
	}
	// The lock lasts 3s from a time truncated to the second: at least 2s from here. A slow machine may
	// take longer than that to send the next request; then only the expiry below can be checked.
	res := vs[0].verify(t, "alice", phone.code(1))
	if time.Since(locked) < 2*time.Second && (res.Status != 429 || res.Header.Get("Retry-After") == "") {
		t.Fatalf("right code during the throttle: %v %v", res, res.Header)
	}
	kubectl(t, "wait", "-n", ns, "--for=condition=Locked=false", "--timeout=30s", "ue/"+enrollment.Name("webapp", "alice"))
	testenv.Eventually(t, "a right code after the throttle", func() bool { return vs[1].verify(t, "alice", phone.code(1)).Status == 200 })
	testenv.Eventually(t, "the lock and its end in the Events", func() bool {
		events, _ := cluster.Kubectl(ctx, "get", "events", "-n", ns)
		return strings.Contains(events, "LockedOut") && strings.Contains(events, "LockExpired")
	})
	assertNoKeyMaterial(t, ns, []authenticator{phone}, vs...)
}

// 6. A GitOps change of code parameters never breaks an authenticator already set up.
func TestParameterEditsApplyToNewEnrollmentsOnly(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, policy("Enforced", ""))
	kubectl(t, "wait", "-n", ns, "--for=condition=Ready", "--timeout=60s", "tfp/webapp")
	vs := startVerifiers(t, ns, "webapp", 2)
	alice := alicesPhone(t, vs[0], vs[1])

	apply(t, ns, policy("Enforced", "  totp: {algorithm: SHA256, digits: 8}\n"))
	testenv.Eventually(t, "the ConfigMap to carry the edit", func() bool {
		out, _ := cluster.Kubectl(ctx, "get", "cm", "webapp-verifier", "-n", ns, "-o", "jsonpath={.data.policy\\.json}")
		return strings.Contains(out, `"algorithm":"SHA256","digits":8`)
	})
	if res := vs[1].verify(t, "alice", alice.code(1)); res.Status != 200 || len(alice.code(1)) != 6 {
		t.Fatalf("alice's 6-digit SHA1 authenticator after the edit: %v", res)
	}
	bob := handOver(t, vs[0], vs[1], "bob")
	if len(bob.code(0)) != 8 {
		t.Fatalf("bob's authenticator shows %d digits, want 8", len(bob.code(0)))
	}
	if res := vs[1].confirm(t, "bob", bob.code(0)); res.Status != 200 {
		t.Fatalf("bob confirming with an 8-digit SHA256 code: %v", res)
	}
	assertNoKeyMaterial(t, ns, []authenticator{alice, bob}, vs...)
}

// 7. A manager crash in the middle of a burst of enrollments loses nothing and changes no key.
func TestManagerCrashDuringABurstOfEnrollments(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, policy("Enforced", ""))
	kubectl(t, "wait", "-n", ns, "--for=condition=Ready", "--timeout=60s", "tfp/webapp")
	const n = 200
	var manifest strings.Builder
	for i := range n {
		fmt.Fprintf(&manifest, "---\napiVersion: twofactor.kube2fa.io/v1alpha1\nkind: UserEnrollment\n"+
			"metadata: {name: user-%03d}\nspec: {policyRef: {name: webapp}, user: user-%03d}\n", i, i)
	}
	done := make(chan error, 1)
	go func() { _, err := cluster.KubectlIn(ctx, manifest.String(), "apply", "-n", ns, "-f", "-"); done <- err }()

	testenv.Eventually(t, "some keys to be provisioned", func() bool { return len(secrets(t, ns)) >= 20 })
	manager.Kill()
	before := secrets(t, ns)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var err error
	if manager, err = startManager(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed the manager with %d of %d keys provisioned", len(before), n)
	kubectl(t, "wait", "-n", ns, "--for=condition=Ready", "--timeout=120s", "ue", "--all")

	after := secrets(t, ns)
	if len(after) != n {
		t.Fatalf("%d Secrets for %d enrollments", len(after), n)
	}
	for name, s := range before {
		if a := after[name]; a.UID != s.UID || string(a.Data["secret"]) != string(s.Data["secret"]) {
			t.Errorf("%s: the key changed across the crash", name)
		}
	}
}

func secrets(t *testing.T, ns string) map[string]corev1.Secret {
	t.Helper()
	var list corev1.SecretList
	if err := cluster.Env.Client.List(ctx, &list, client.InNamespace(ns),
		client.MatchingLabels{"app.kubernetes.io/managed-by": "kube2fa"}); err != nil {
		t.Fatal(err)
	}
	out := map[string]corev1.Secret{}
	for _, s := range list.Items {
		out[s.Name] = s
	}
	return out
}
