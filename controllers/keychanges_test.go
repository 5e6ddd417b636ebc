package controllers

import (
	"context"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/changes"
)

func secretOf(owner *v1alpha1.UserEnrollment, rv string) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s", ResourceVersion: rv}}
	if owner != nil {
		m.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(owner, v1alpha1.GroupVersion.WithKind("UserEnrollment"))}
	}
	return m
}

// A change of a Secret brings the enrollment that controls it. A watch that ended for good may have missed
// changes: the watch that follows brings every enrollment, as an informer's relist would.
func TestKeyChangesBringTheEnrollmentAndAfterAGapAll(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watching := make(chan *watch.FakeWatcher, 2)
	everyone := []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "carol"}}}
	k := newKeyChanges(changes.Feed{
		What: "secrets",
		Now:  func(context.Context) (string, error) { return "100", nil },
		Watch: func(context.Context, metav1.ListOptions) (watch.Interface, error) {
			w := watch.NewFake()
			watching <- w
			return w, nil
		},
	}, func(context.Context) ([]reconcile.Request, error) { return everyone, nil })
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()
	if err := k.Start(ctx, q); err != nil {
		t.Fatal(err)
	}
	synced, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	if err := k.WaitForSync(synced); err != nil {
		t.Fatal(err)
	}
	w := <-watching
	if q.Len() != 0 {
		t.Fatalf("the first watch brought %d enrollments", q.Len())
	}

	alice := &v1alpha1.UserEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "alice", UID: "a"}}
	w.Modify(secretOf(nil, "101")) // nobody's
	w.Delete(secretOf(alice, "102"))
	if got := next(t, q); got.Name != "alice" {
		t.Fatalf("brought %v, want alice", got)
	}
	if q.Len() != 0 {
		t.Fatalf("a Secret no enrollment controls brought %d", q.Len())
	}

	w.Error(&apierrors.NewResourceExpired("too old resource version").ErrStatus) // a gap
	<-watching
	if got := next(t, q); got.Name != "carol" {
		t.Fatalf("after the gap, brought %v, want every enrollment (carol)", got)
	}
}

func next(t *testing.T, q workqueue.TypedRateLimitingInterface[reconcile.Request]) reconcile.Request {
	t.Helper()
	got := make(chan reconcile.Request, 1)
	go func() {
		req, _ := q.Get()
		q.Done(req)
		got <- req
	}()
	select {
	case req := <-got:
		return req
	case <-time.After(10 * time.Second):
		t.Fatal("nothing was brought within 10s")
		return reconcile.Request{}
	}
}
