package verifier

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/changes"
)

func ue(user, rv string) *v1alpha1.UserEnrollment {
	return &v1alpha1.UserEnrollment{ObjectMeta: metav1.ObjectMeta{Name: user, ResourceVersion: rv},
		Spec: v1alpha1.UserEnrollmentSpec{User: user}}
}

// What a read returned is remembered only when no change of it was seen while the read was under way:
// otherwise the replica would answer from the version before the change until the next one.
func TestAReadOvertakenByAChangeIsNotRemembered(t *testing.T) {
	d := newDirectory(0)
	mark := d.reading()
	d.changed("alice") // the watch: alice changed while her read was under way
	d.settle("alice", mark, ue("alice", "1"))
	if _, ok := d.user("alice"); ok {
		t.Fatal("a read overtaken by a change was remembered")
	}

	mark = d.reading()
	d.changed("bob") // another user's change does not matter
	d.settle("alice", mark, ue("alice", "2"))
	if e, ok := d.user("alice"); !ok || e.ResourceVersion != "2" {
		t.Fatalf("a read begun after the last change of its user: %v, %v", e, ok)
	}
	d.changed("alice")
	if _, ok := d.user("alice"); ok {
		t.Fatal("a change did not evict the enrollment")
	}

	// No enrollment is remembered too, until one is created.
	d.settle("carol", d.reading(), nil)
	if e, ok := d.user("carol"); !ok || e != nil {
		t.Fatalf("carol's absence: %v, %v", e, ok)
	}
	d.changed("carol")
	if _, ok := d.user("carol"); ok {
		t.Fatal("a creation did not evict the absence")
	}
}

// When the LRU drops the record of a change, a read begun before that change is not remembered either.
func TestAChangeWhoseRecordWasEvictedStillKeepsAnOlderReadOut(t *testing.T) {
	d := newDirectory(0)
	mark := d.reading()
	d.changed("alice")
	for i := range DefaultRememberedUsers { // push alice's record out
		d.settle(fmt.Sprint("user-", i), d.reading(), nil)
	}
	d.settle("alice", mark, ue("alice", "1"))
	if _, ok := d.user("alice"); ok {
		t.Fatal("a read begun before an evicted change was remembered")
	}
	d.settle("alice", d.reading(), ue("alice", "2"))
	if _, ok := d.user("alice"); !ok {
		t.Fatal("a read begun after every change was not remembered")
	}
}

// Without its watches, a replica cannot know what changed: it remembers nothing, and a watch that ends makes
// it forget everything.
func TestNothingIsRememberedWithoutTheWatches(t *testing.T) {
	d := newDirectory(2)
	d.started()
	d.settle("alice", d.reading(), ue("alice", "1"))
	d.settleKey("secret-1", d.keyMark(), parsedKey{})
	if _, ok := d.user("alice"); ok {
		t.Fatal("remembered with one of two watches running")
	}
	d.started()
	d.settle("alice", d.reading(), ue("alice", "1"))
	d.settleKey("secret-1", d.keyMark(), parsedKey{})
	if _, ok := d.user("alice"); !ok {
		t.Fatal("not remembered with both watches running")
	}
	mark, keyMark := d.reading(), d.keyMark()
	d.stopped()
	if _, ok := d.user("alice"); ok {
		t.Fatal("an enrollment was remembered after a watch ended")
	}
	if _, ok := d.key("secret-1"); ok {
		t.Fatal("a key was remembered after a watch ended")
	}
	d.started()
	d.settle("bob", mark, ue("bob", "1")) // read while the watch was down
	d.settleKey("secret-2", keyMark, parsedKey{})
	if _, ok := d.user("bob"); ok {
		t.Fatal("a read begun while a watch was down was remembered")
	}
	if _, ok := d.key("secret-2"); ok {
		t.Fatal("a key read while a watch was down was remembered")
	}
}

// A watch whose version expired ends (410 Gone), whether the API server says so in an event or refuses the
// call: the replica forgets everything and watches again from the current version. client-go's RetryWatcher
// alone would retry the refused call for ever, and the replica answer from what it remembers.
func TestAnExpiredWatchForgetsEverythingAndStartsAgain(t *testing.T) {
	for name, expire := range map[string]func(w *watch.FakeWatcher) (watch.Interface, error){
		"in an event": func(w *watch.FakeWatcher) (watch.Interface, error) {
			go w.Error(&apierrors.NewResourceExpired("too old resource version").ErrStatus)
			return w, nil
		},
		"refusing the call": func(*watch.FakeWatcher) (watch.Interface, error) {
			return nil, apierrors.NewResourceExpired("too old resource version")
		},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			d := newDirectory(1)
			var nows, watches atomic.Int32
			watching := make(chan *watch.FakeWatcher, 10)
			f := changes.Feed{
				What: "userenrollments",
				Now:  func(context.Context) (string, error) { return fmt.Sprint(100 + nows.Add(1)), nil },
				Watch: func(_ context.Context, o metav1.ListOptions) (watch.Interface, error) {
					w := watch.NewFake()
					if watches.Add(1) == 2 { // the first watch broke; resuming it at its version is refused
						return expire(w)
					}
					watching <- w
					return w, nil
				},
				On: func(ev watch.Event) { d.changed(ev.Object.(*v1alpha1.UserEnrollment).Spec.User) },
			}
			first := make(chan struct{}, 1)
			go d.follow(ctx, f, first)
			<-first
			w := <-watching
			d.settle("alice", d.reading(), ue("alice", "1"))
			if _, ok := d.user("alice"); !ok {
				t.Fatal("not remembered while watching")
			}
			w.Stop() // the connection breaks
			waitFor(t, func() bool { _, ok := d.user("alice"); return !ok })
			next := <-watching // watching again, from the version read anew
			if nows.Load() != 2 {
				t.Fatalf("the current version was read %d times, want 2", nows.Load())
			}
			waitFor(t, d.current)
			d.settle("carol", d.reading(), nil)
			next.Add(ue("carol", "105"))
			waitFor(t, func() bool { _, ok := d.user("carol"); return !ok })
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
	}
}
