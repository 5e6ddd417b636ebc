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
// answer must stand for exactly one update of the user's Lease that changes it, and a bad request for none.
func TestForwarderWritesOnceForEachRequest(t *testing.T) {
	store := &leaseStore{leases: map[string]*coordinationv1.Lease{}}
	f := &forwarder{leases: store, held: map[string]*ceilingLease{}}
	post := func(body string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		f.verify(w, httptest.NewRequest(http.MethodPost, "/v1/verify", strings.NewReader(body)))
		return w
	}

	if w := post(`{"code":"123456"}`); w.Code != http.StatusBadRequest || store.creates+store.updates != 0 {
		t.Fatalf("a request without a user: %d, %d writes; want 400 and none", w.Code, store.creates+store.updates)
	}
	var counters []string
	for i := range 3 {
		w := post(`{"user":"alice","code":"123456"}`)
		if w.Code != http.StatusOK || w.Body.String() != `{"result":"accepted"}` {
			t.Fatalf("request %d: %d %s; want 200 accepted", i, w.Code, w.Body)
		}
		if store.creates != 1 || store.updates != i+1 {
			t.Fatalf("after request %d: %d creates, %d updates; want 1 and %d", i, store.creates, store.updates, i+1)
		}
		counters = append(counters, store.leases["hop-alice"].Annotations["twofactor.kube2fa.io/hotp-counter"])
	}
	if counters[0] == counters[1] || counters[1] == counters[2] {
		t.Errorf("counters %v: each write must change the Lease, or the API server skips it", counters)
	}
}
