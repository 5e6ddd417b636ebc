package controllers_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/controllers"
	"github.com/kube2fa/kube2fa/internal/enrollment"
	"github.com/kube2fa/kube2fa/internal/render"
	"github.com/kube2fa/kube2fa/internal/testenv"
)

func TestPolicyIsRenderedIntoTheVerifierConfigMap(t *testing.T) {
	ns := env.Namespace(t)
	startManager(t)
	createPolicy(t, ns, "webapp", enforcedTOTP())

	p := &v1alpha1.TwoFactorPolicy{}
	testenv.EventuallyErr(t, "the policy to be Ready", func() (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "webapp"}, p)
		return meta.IsStatusConditionTrue(p.Status.Conditions, v1alpha1.ConditionReady) && p.Status.ObservedGeneration == p.Generation, err
	})
	if p.Status.VerifierConfigMap != "webapp-verifier" {
		t.Errorf("status.verifierConfigMap = %q", p.Status.VerifierConfigMap)
	}
	cm := &corev1.ConfigMap{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "webapp-verifier"}, cm); err != nil {
		t.Fatal(err)
	}
	if !metav1.IsControlledBy(cm, p) {
		t.Error("the ConfigMap is not owned by the policy")
	}
	assertConfigMapMatches(t, cm, p)

	// A GitOps edit lands in the ConfigMap, with a new content hash.
	oldHash := cm.Annotations[v1alpha1.AnnotationConfigHash]
	testenv.EditPolicy(t, env.Client, client.ObjectKey{Namespace: ns, Name: "webapp"}, func(s *v1alpha1.TwoFactorPolicySpec) {
		s.Lockout = &v1alpha1.LockoutSettings{MaxFailures: 5}
	})
	testenv.EventuallyErr(t, "the ConfigMap to follow the edit", func() (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(cm), cm)
		got, perr := render.ParseVerifierConfigMap(cm)
		return err == nil && perr == nil && got.Lockout.MaxFailures == 5, err
	})
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), p); err != nil {
		t.Fatal(err)
	}
	assertConfigMapMatches(t, cm, p)
	if cm.Annotations[v1alpha1.AnnotationConfigHash] == oldHash {
		t.Error("the content hash did not change with the content")
	}

	// A hand edit of the ConfigMap is put back.
	cm.Data[render.ConfigMapKeyPolicy] = `{"mode":"Disabled"}`
	if err := env.Client.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyErr(t, "the ConfigMap to be restored", func() (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(cm), cm)
		got, _ := render.ParseVerifierConfigMap(cm)
		return got.Mode == v1alpha1.ModeEnforced, err
	})
}

func assertConfigMapMatches(t *testing.T, cm *corev1.ConfigMap, p *v1alpha1.TwoFactorPolicy) {
	t.Helper()
	got, err := render.ParseVerifierConfigMap(cm)
	if err != nil {
		t.Fatal(err)
	}
	want := p.Resolve()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ConfigMap holds %+v, want the resolved policy %+v", got, want)
	}
	sum := sha256.Sum256([]byte(cm.Data[render.ConfigMapKeyPolicy]))
	if cm.Annotations[v1alpha1.AnnotationConfigHash] != hex.EncodeToString(sum[:]) {
		t.Error("the content-hash annotation does not match the content")
	}
}

func TestPolicyCountsEnrollmentsWithCoalescedStatusWrites(t *testing.T) {
	ns := env.Namespace(t)
	startManager(t)
	createPolicy(t, ns, "webapp", enforcedTOTP())
	testenv.EventuallyErr(t, "the policy to be Ready", func() (bool, error) {
		p := &v1alpha1.TwoFactorPolicy{}
		err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "webapp"}, p)
		return meta.IsStatusConditionTrue(p.Status.Conditions, v1alpha1.ConditionReady), err
	})

	// Count every write to the policy from here on.
	var list v1alpha1.TwoFactorPolicyList
	w, err := env.Client.Watch(ctx, &list, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var writes atomic.Int32
	go func() {
		for ev := range w.ResultChan() {
			if ev.Type == watch.Modified {
				writes.Add(1)
			}
		}
	}()

	// Enough enrollments that they change faster than a policy status write takes.
	const n = 200
	start := time.Now()
	for i := range n {
		createEnrollment(t, ns, fmt.Sprintf("user-%02d", i), "webapp", fmt.Sprintf("user-%02d", i))
	}
	for i := range n {
		waitCondition(t, ns, fmt.Sprintf("user-%02d", i), v1alpha1.ConditionReady, metav1.ConditionTrue, "")
	}
	recordAttempts(t, ns, "user-00", enrollment.Settings{MaxFailures: 3}, 1, true)
	recordAttempts(t, ns, "user-01", enrollment.Settings{MaxFailures: 1}, 1, false)

	want := v1alpha1.EnrollmentCounts{Total: n, Confirmed: 1, Pending: n - 1, Locked: 1}
	p := &v1alpha1.TwoFactorPolicy{}
	testenv.EventuallyErr(t, fmt.Sprintf("counts %+v", want), func() (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "webapp"}, p)
		return p.Status.Enrollments != nil && *p.Status.Enrollments == want, err
	})
	// The manager exports the same counts (what dashboards and alerts read), and forgets a deleted policy's.
	for state, n := range map[string]int32{"total": want.Total, "confirmed": want.Confirmed, "pending": want.Pending, "locked": want.Locked} {
		if got := gauge(t, "kube2fa_policy_enrollments", map[string]string{"namespace": ns, "policy": "webapp", "state": state}); got != float64(n) {
			t.Errorf("kube2fa_policy_enrollments{state=%q} = %v, want %d", state, got, n)
		}
	}
	// Each enrollment changes at least twice (created, then provisioned); without coalescing that would be
	// 2n policy writes. Coalesced, there is at most one recount per CountsDelay, and the last one.
	elapsed := time.Since(start)
	limit := int32(elapsed/controllers.DefaultCountsDelay) + 2
	if got := writes.Load(); got > limit {
		t.Errorf("%d policy status writes for %d enrollments in %v, want at most %d: counts are not coalesced",
			got, n, elapsed.Round(time.Millisecond), limit)
	} else {
		t.Logf("%d policy status writes for %d enrollments in %v", got, n, elapsed.Round(time.Millisecond))
	}
	if err := env.Client.Delete(ctx, p); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the deleted policy's counts to go from the metrics", func() bool {
		return gauge(t, "kube2fa_policy_enrollments", map[string]string{"namespace": ns, "policy": "webapp", "state": "total"}) == -1
	})
}

// A ConfigMap of the verifier ConfigMap's name that the policy does not control is never taken over and
// never left silently: Ready=False ConfigMapConflict with a Warning Event, and the manager keeps trying, so
// that it renders its own once the foreign one is gone.
func TestAForeignConfigMapIsAConflictUntilItGoes(t *testing.T) {
	ns := env.Namespace(t)
	startManager(t)
	foreign := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "webapp-verifier",
		Labels: map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelPolicy: "webapp"}},
		Data: map[string]string{render.ConfigMapKeyPolicy: `{"mode":"Disabled"}`}}
	if err := env.Client.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	p := createPolicy(t, ns, "webapp", enforcedTOTP())
	policyReady := func(reason string) func() (bool, error) {
		return func() (bool, error) {
			err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), p)
			c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReady)
			return c != nil && c.Reason == reason, err
		}
	}
	testenv.EventuallyErr(t, "Ready=False ConfigMapConflict", policyReady(v1alpha1.ReasonConfigMapConflict))
	testenv.EventuallyErr(t, "a ConfigMapConflict Warning Event", func() (bool, error) {
		var list eventsv1.EventList
		err := env.Client.List(ctx, &list, client.InNamespace(ns))
		return slices.ContainsFunc(list.Items, func(ev eventsv1.Event) bool {
			return ev.Reason == v1alpha1.ReasonConfigMapConflict && ev.Type == corev1.EventTypeWarning && ev.Regarding.Name == "webapp"
		}), err
	})
	if got := getConfigMap(t, ns, "webapp-verifier"); got.Data[render.ConfigMapKeyPolicy] != `{"mode":"Disabled"}` || len(got.OwnerReferences) != 0 {
		t.Fatalf("the foreign ConfigMap was changed: %+v", got)
	}

	if err := env.Client.Delete(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyErr(t, "the manager to render its own ConfigMap", policyReady(v1alpha1.ReasonReconciled))
	if cm := getConfigMap(t, ns, "webapp-verifier"); !metav1.IsControlledBy(cm, p) {
		t.Errorf("the ConfigMap after the conflict is not the policy's: %+v", cm.OwnerReferences)
	}
}

func getConfigMap(t *testing.T, ns, name string) *corev1.ConfigMap {
	t.Helper()
	cm := &corev1.ConfigMap{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, cm); err != nil {
		t.Fatal(err)
	}
	return cm
}

// gauge reads a gauge of the manager's metrics registry with exactly these labels, or -1 when it has none.
func gauge(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if maps.Equal(got, labels) {
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}
