package controllers

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/util/workqueue"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kube2fa/kube2fa/internal/changes"
	"github.com/kube2fa/kube2fa/internal/render"
)

// keyChanges is the enrollment controller's source of key Secret changes: a watch of their metadata from the
// current version on (changes.Follow), which keeps nothing. Each change brings the enrollment that controls
// the Secret (its deletion makes a confirmed enrollment's key lost). A time without a watch may have hidden
// changes, so the watch that follows it brings every enrollment, as an informer's relist would.
type keyChanges struct {
	feed changes.Feed
	// all is a request for every enrollment.
	all func(context.Context) ([]reconcile.Request, error)

	started chan struct{}
}

// newKeyChanges follows feed, with all for the time after a gap.
func newKeyChanges(feed changes.Feed, all func(context.Context) ([]reconcile.Request, error)) *keyChanges {
	return &keyChanges{feed: feed, all: all, started: make(chan struct{})}
}

// Start follows the Secrets until ctx ends, adding to q.
func (k *keyChanges) Start(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	f := k.feed
	f.On = func(ev watch.Event) {
		if m, ok := ev.Object.(*metav1.PartialObjectMetadata); ok {
			if ref := render.ControllingEnrollment(m); ref != nil {
				q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: m.Namespace, Name: ref.Name}})
			}
		}
	}
	f.Started = func(first bool) {
		if first {
			close(k.started)
			return
		}
		reqs, err := k.all(ctx)
		if err != nil {
			logf.FromContext(ctx).Error(err, "Listing every userenrollment after a time without a watch of their Secrets failed")
		}
		for _, req := range reqs {
			q.Add(req)
		}
	}
	go changes.Follow(ctx, f)
	return nil
}

// WaitForSync returns once the first watch runs: the controller starts no pass before, so that no change of
// a Secret after a pass read it goes unheard.
func (k *keyChanges) WaitForSync(ctx context.Context) error {
	select {
	case <-k.started:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (k *keyChanges) String() string { return "watch of the metadata of kube2fa's Secrets" }
