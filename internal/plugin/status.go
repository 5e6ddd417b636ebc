package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/enrollment"
	"github.com/kube2fa/kube2fa/internal/render"
)

// UserStatus is a user's enrollment under one policy, as `kubectl 2fa status USER -o json|yaml` prints it.
type UserStatus struct {
	User       string `json:"user"`
	Policy     string `json:"policy"`
	Enrollment string `json:"enrollment"`
	// State is Provisioning, Pending or Confirmed; Ready is the Ready condition's reason.
	State       string          `json:"state"`
	Ready       string          `json:"ready"`
	Method      v1alpha1.Method `json:"method,omitempty"`
	ConfirmedAt *metav1.Time    `json:"confirmedAt,omitempty"`
	Locked      bool            `json:"locked"`
	// LockedUntil is when the lock ends; absent while locked means until an administrator unlocks.
	LockedUntil            *metav1.Time `json:"lockedUntil,omitempty"`
	FailedAttempts         int32        `json:"failedAttempts"`
	LastFailureAt          *metav1.Time `json:"lastFailureAt,omitempty"`
	LastSuccessAt          *metav1.Time `json:"lastSuccessAt,omitempty"`
	RecoveryCodesRemaining *int32       `json:"recoveryCodesRemaining,omitempty"`
}

func (o *options) statusCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status [USER]",
		Short: "The namespace's policies, or one user's enrollments",
		Example: `  # Every policy of the namespace: mode, methods, and how many users are enrolled, pending, locked
  kubectl 2fa status -n shop

  # alice's enrollments: enrolled since when, locked until when, failures, recovery codes left
  kubectl 2fa status alice -n shop
  kubectl 2fa status alice -n shop -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "" && output != "json" && output != "yaml" {
				return fmt.Errorf("--output must be json or yaml, not %q", output)
			}
			c, ns, err := o.client()
			if err != nil {
				return err
			}
			if len(args) == 0 {
				return o.policies(cmd.Context(), c, ns, output)
			}
			return o.user(cmd.Context(), c, ns, args[0], output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "json or yaml instead of text")
	return cmd
}

// policies prints the grid of the namespace's policies.
func (o *options) policies(ctx context.Context, c client.Client, ns, output string) error {
	var list v1alpha1.TwoFactorPolicyList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return fmt.Errorf("listing twofactorpolicies: %w", err)
	}
	if output != "" {
		return printAs(o.streams.Out, output, list.Items)
	}
	if len(list.Items) == 0 {
		_, _ = fmt.Fprintf(o.streams.Out, "No TwoFactorPolicy in namespace %s.\n", ns)
		return nil
	}
	w := printers.GetNewTabWriter(o.streams.Out)
	_, _ = fmt.Fprintln(w, "POLICY\tMODE\tMETHODS\tENROLLED\tPENDING\tLOCKED\tTOTAL\tREADY")
	for _, p := range list.Items {
		methods := make([]string, len(p.Spec.Methods))
		for i, m := range p.Spec.Methods {
			methods[i] = string(m)
		}
		n := p.Status.Enrollments
		ready := "Unknown"
		if c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReady); c != nil {
			ready = string(c.Status)
		}
		_, _ = fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", p.Name, p.Spec.Mode, strings.Join(methods, ","),
			n.Confirmed, n.Pending, n.Locked, n.Total, ready)
	}
	return w.Flush()
}

// user prints a user's enrollments with their state.
func (o *options) user(ctx context.Context, c client.Client, ns, user, output string) error {
	items, err := o.enrollments(ctx, c, ns, user)
	if err != nil {
		return err
	}
	out := make([]UserStatus, 0, len(items))
	for i := range items {
		s, err := statusOf(ctx, c, &items[i], o.now())
		if err != nil {
			return err
		}
		out = append(out, s)
	}
	if output != "" {
		return printAs(o.streams.Out, output, out)
	}
	for i, s := range out {
		if i > 0 {
			_, _ = fmt.Fprintln(o.streams.Out)
		}
		describe(o.streams.Out, s)
	}
	return nil
}

// statusOf reads e's state Lease and sums up e.
func statusOf(ctx context.Context, c client.Client, e *v1alpha1.UserEnrollment, now time.Time) (UserStatus, error) {
	s := UserStatus{User: e.Spec.User, Policy: e.Spec.PolicyRef.Name, Enrollment: e.Name, Method: e.Status.Method,
		ConfirmedAt: e.Status.ConfirmedAt, RecoveryCodesRemaining: e.Status.RecoveryCodesRemaining, Ready: "not reconciled yet"}
	switch {
	case e.Status.ConfirmedAt != nil:
		s.State = "Confirmed"
	case e.Status.SecretUID != "":
		s.State = "Pending"
	default:
		s.State = "Provisioning"
	}
	if r := meta.FindStatusCondition(e.Status.Conditions, v1alpha1.ConditionReady); r != nil {
		s.Ready = r.Reason
	}
	l := &coordinationv1.Lease{}
	switch err := c.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: render.StateLeaseName(e.Spec.PolicyRef.Name, e.Spec.User)}, l); {
	case apierrors.IsNotFound(err):
		return s, nil // no decision yet
	case err != nil:
		return s, fmt.Errorf("reading the state lease of %s: %w", e.Name, err)
	}
	recorded, err := render.RecordedState(l, e)
	if err != nil {
		return s, err
	}
	st := enrollment.StateOf(recorded, e.Status.SecretUID)
	enrollment.Expire(&st, now)
	s.Locked, s.LockedUntil = enrollment.IsLocked(&st, now), st.LockedUntil
	s.FailedAttempts, s.LastFailureAt, s.LastSuccessAt = st.FailedAttempts, st.LastFailureAt, st.LastSuccessAt
	return s, nil
}

// describe writes s for a person at a terminal.
func describe(w io.Writer, s UserStatus) {
	line := func(label, value string) { _, _ = fmt.Fprintf(w, "  %-22s %s\n", label+":", value) }
	_, _ = fmt.Fprintf(w, "%s under policy %s (enrollment %s)\n", s.User, s.Policy, s.Enrollment)
	switch s.State {
	case "Confirmed":
		line("Enrolled", fmt.Sprintf("yes, %s, since %s", s.Method, stamp(s.ConfirmedAt)))
	case "Pending":
		line("Enrolled", "no: waiting for a first code")
	default:
		line("Enrolled", "no: no key yet ("+s.Ready+")")
	}
	if s.Ready != v1alpha1.ReasonKeyProvisioned {
		line("Ready", s.Ready)
	}
	switch {
	case !s.Locked:
		line("Locked", "no")
	case s.LockedUntil == nil:
		line("Locked", fmt.Sprintf("until an administrator unlocks (kubectl 2fa unlock %s)", s.User))
	default:
		line("Locked", "until "+stamp(s.LockedUntil))
	}
	failures := fmt.Sprint(s.FailedAttempts)
	if s.LastFailureAt != nil {
		failures += ", the last at " + stamp(s.LastFailureAt)
	}
	line("Failures", failures)
	line("Last success", stamp(s.LastSuccessAt))
	if s.RecoveryCodesRemaining != nil {
		line("Recovery codes left", fmt.Sprint(*s.RecoveryCodesRemaining))
	}
}

func stamp(t *metav1.Time) string {
	if t == nil {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

// printAs writes v as JSON or YAML.
func printAs(w io.Writer, format string, v any) error {
	var raw []byte
	var err error
	if format == "json" {
		raw, err = json.MarshalIndent(v, "", "  ")
		raw = append(raw, '\n')
	} else {
		raw, err = yaml.Marshal(v)
	}
	if err != nil {
		return err
	}
	_, err = w.Write(raw)
	return err
}
