package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	coordinationclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/render"
	"github.com/kube2fa/kube2fa/internal/scheme"
)

// leaseStore is the part of a Lease client the forwarder uses, over a map, counting the writes.
type leaseStore struct {
	coordinationclient.LeaseInterface
	leases           map[string]*coordinationv1.Lease
	creates, updates int
}

func (s *leaseStore) Get(_ context.Context, name string, _ metav1.GetOptions) (*coordinationv1.Lease, error) {
	if l, ok := s.leases[name]; ok {
		return l.DeepCopy(), nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, name)
}

func (s *leaseStore) Create(_ context.Context, l *coordinationv1.Lease, _ metav1.CreateOptions) (*coordinationv1.Lease, error) {
	s.creates++
	s.leases[l.Name] = l.DeepCopy()
	return l, nil
}

func (s *leaseStore) Update(_ context.Context, l *coordinationv1.Lease, _ metav1.UpdateOptions) (*coordinationv1.Lease, error) {
	s.updates++
	s.leases[l.Name] = l.DeepCopy()
	return l, nil
}

// TestForwarderWritesOnceForEachRequest: the hop ceiling counts a forwarder's answers as writes, so each
// answer must stand for exactly one update that changes the user's state-shaped Lease (controlled by the
// user's enrollment, as a state Lease is), and a bad request for none.
func TestForwarderWritesOnceForEachRequest(t *testing.T) {
	e := &v1alpha1.UserEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: "storm", Name: "alice", UID: "e-1"},
		Spec:   v1alpha1.UserEnrollmentSpec{User: "alice", PolicyRef: v1alpha1.PolicyReference{Name: "webapp"}},
		Status: v1alpha1.UserEnrollmentStatus{SecretUID: "key-1"}}
	store := &leaseStore{leases: map[string]*coordinationv1.Lease{}}
	f := &forwarder{ns: "storm", leases: store, held: map[string]*ceilingLease{},
		enrollments: fake.NewClientBuilder().WithScheme(scheme.Scheme).WithObjects(e).Build()}
	post := func(body string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		f.verify(w, httptest.NewRequest(http.MethodPost, "/v1/verify", strings.NewReader(body)))
		return w
	}

	if w := post(`{"code":"123456"}`); w.Code != http.StatusBadRequest || store.creates+store.updates != 0 {
		t.Fatalf("a request without a user: %d, %d writes; want 400 and none", w.Code, store.creates+store.updates)
	}
	name := render.StateLeaseName("webapp-hop", "alice")
	var states []string
	for i := range 3 {
		w := post(`{"user":"alice","code":"123456"}`)
		if w.Code != http.StatusOK || w.Body.String() != `{"result":"accepted"}` {
			t.Fatalf("request %d: %d %s; want 200 accepted", i, w.Code, w.Body)
		}
		if store.creates != 1 || store.updates != i+1 {
			t.Fatalf("after request %d: %d creates, %d updates; want 1 and %d", i, store.creates, store.updates, i+1)
		}
		l := store.leases[name]
		if l == nil || !metav1.IsControlledBy(l, e) {
			t.Fatalf("after request %d: Lease %s is %v; want it controlled by the enrollment, as a state Lease is", i, name, l)
		}
		states = append(states, l.Annotations[v1alpha1.AnnotationState])
	}
	if states[0] == states[1] || states[1] == states[2] {
		t.Errorf("states %v: each write must change the Lease, or the API server skips it", states)
	}
}
