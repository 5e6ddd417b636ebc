// Package controllers holds kube2fa's reconcilers: thin orchestrators over the pure logic in internal/.
package controllers

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/enrollment"
)

// Field indexes over UserEnrollments in the manager's cache.
const (
	// IndexPolicy holds an enrollment's policy name.
	IndexPolicy = "spec.policyRef.name"
	// IndexPolicyUser holds enrollment.KeyOf, to find every enrollment of one user under one policy.
	IndexPolicyUser = "spec.policyRef.name+spec.user"
)

// FieldIndexer is the part of a manager that registers field indexes.
type FieldIndexer interface {
	GetFieldIndexer() client.FieldIndexer
}

// SetupIndexes registers the field indexes the reconcilers query.
func SetupIndexes(ctx context.Context, mgr FieldIndexer) error {
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &v1alpha1.UserEnrollment{}, IndexPolicy, func(o client.Object) []string {
		return []string{o.(*v1alpha1.UserEnrollment).Spec.PolicyRef.Name}
	}); err != nil {
		return err
	}
	return idx.IndexField(ctx, &v1alpha1.UserEnrollment{}, IndexPolicyUser, func(o client.Object) []string {
		return []string{enrollment.KeyOf(o.(*v1alpha1.UserEnrollment))}
	})
}

// indexedEnrollments lists from the cache the enrollments in namespace whose index holds value. They are
// the cache's own objects, not copies (a policy of 10,000 enrollments would otherwise copy them all at each
// recount): read them, never change them.
func indexedEnrollments(ctx context.Context, c client.Reader, namespace, index, value string) ([]v1alpha1.UserEnrollment, error) {
	var list v1alpha1.UserEnrollmentList
	err := c.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{index: value}, client.UnsafeDisableDeepCopy)
	return list.Items, err
}

func requestsFor(items []v1alpha1.UserEnrollment) []reconcile.Request {
	reqs := make([]reconcile.Request, len(items))
	for i := range items {
		reqs[i] = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&items[i])}
	}
	return reqs
}
