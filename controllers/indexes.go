// Package controllers holds kube2fa's reconcilers: thin orchestrators over the pure logic in internal/.
package controllers

import (
	"context"
	"hash/fnv"
	"slices"
	"strconv"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/enrollment"
)

// Field indexes over UserEnrollments in the manager's cache.
const (
	// IndexPolicyUser holds a bucket of enrollment.KeyOf (see userBucket): every enrollment of one user under
	// one policy is in one bucket, with a few others that enrollmentsOfUser leaves out. A value per
	// enrollment would cost the index two one-element sets per enrollment (controller-runtime indexes each
	// value for its namespace and for all namespaces): about 60 MB at 100,000 enrollments.
	IndexPolicyUser = "policy+user-bucket"
)

// userBuckets is how many buckets IndexPolicyUser has: at 100,000 enrollments in a namespace, about 25 in
// each.
const userBuckets = 4096

// Indexes are the field indexes over UserEnrollments, by name.
var Indexes = map[string]client.IndexerFunc{
	IndexPolicyUser: func(o client.Object) []string {
		return []string{userBucket(enrollment.KeyOf(o.(*v1alpha1.UserEnrollment)))}
	},
}

// userBucket is the bucket of an enrollment.Key.
func userBucket(key string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return strconv.FormatUint(uint64(h.Sum32()%userBuckets), 16)
}

// FieldIndexer is the part of a manager that registers field indexes.
type FieldIndexer interface {
	GetFieldIndexer() client.FieldIndexer
}

// SetupIndexes registers the field indexes the reconcilers query.
func SetupIndexes(ctx context.Context, mgr FieldIndexer) error {
	for name, index := range Indexes {
		if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.UserEnrollment{}, name, index); err != nil {
			return err
		}
	}
	return nil
}

// enrollmentsOfUser lists from the cache the enrollments in namespace of one user under one policy
// (enrollment.Key). They are shallow copies of the cache's own objects (their maps and slices are the
// cache's): read them, never change them.
func enrollmentsOfUser(ctx context.Context, c client.Reader, namespace, key string) ([]v1alpha1.UserEnrollment, error) {
	var list v1alpha1.UserEnrollmentList
	err := c.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{IndexPolicyUser: userBucket(key)},
		client.UnsafeDisableDeepCopy)
	return slices.DeleteFunc(list.Items, func(e v1alpha1.UserEnrollment) bool { return enrollment.KeyOf(&e) != key }), err
}

func requestsFor(items []v1alpha1.UserEnrollment) []reconcile.Request {
	reqs := make([]reconcile.Request, len(items))
	for i := range items {
		reqs[i] = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&items[i])}
	}
	return reqs
}
