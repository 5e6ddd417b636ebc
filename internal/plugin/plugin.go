// Package plugin is `kubectl 2fa`, the helpdesk's kubectl plugin (cmd/kubectl-2fa): the grid of a
// namespace's policies and of a user's enrollments, unlock, and reset (the recovery). It follows kubectl's
// conventions: cli-runtime's flags (--namespace, --context, --kubeconfig, ...), -o json|yaml, and exit codes
// scripts can use.
package plugin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/scheme"
)

// Exit codes.
const (
	// ExitOK: done.
	ExitOK = 0
	// ExitError: the command failed (bad usage, the API server refused or did not answer, a wait timed
	// out, the operator declined a confirmation).
	ExitError = 1
	// ExitNotFound: the user has no enrollment (under --policy, when given).
	ExitNotFound = 2
)

// ErrNotFound: the user has no enrollment.
var ErrNotFound = errors.New("not found")

// options are the flags every command shares.
type options struct {
	flags   *genericclioptions.ConfigFlags
	streams genericiooptions.IOStreams
	policy  string
	timeout time.Duration
	now     func() time.Time
}

// Main runs `kubectl 2fa` with args and returns its exit code.
func Main(args []string, streams genericiooptions.IOStreams) int {
	cmd := NewCommand(streams)
	cmd.SetArgs(args)
	err := cmd.Execute()
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrNotFound):
		_, _ = fmt.Fprintln(streams.ErrOut, "error:", err)
		return ExitNotFound
	}
	_, _ = fmt.Fprintln(streams.ErrOut, "error:", err)
	return ExitError
}

// NewCommand returns the `kubectl 2fa` command tree.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &options{flags: genericclioptions.NewConfigFlags(true), streams: streams, now: time.Now}
	root := &cobra.Command{
		Use:         "kubectl-2fa",
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl 2fa"},
		Short:       "Look after kube2fa's users: who is enrolled or locked, unlock, reset",
		Long: `kubectl 2fa shows and changes the two-factor state of a namespace's users, as kube2fa keeps it in
TwoFactorPolicies, UserEnrollments and their state Leases.

Exit codes: 0 done; 1 failed (usage, the API server, a wait that timed out, a declined confirmation);
2 the user has no enrollment.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	o.flags.AddFlags(root.PersistentFlags())
	root.PersistentFlags().StringVar(&o.policy, "policy", "", "only the enrollments under this TwoFactorPolicy")
	root.PersistentFlags().DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait for kube2fa to act")
	root.AddCommand(o.statusCommand(), o.unlockCommand(), o.resetCommand(), o.enrollCommand(), o.qrCommand(), o.reissueCommand())
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	root.SetIn(streams.In)
	return root
}

// client returns a client of the kubeconfig's cluster and the namespace to work in.
func (o *options) client() (client.Client, string, error) {
	cfg, err := o.flags.ToRESTConfig()
	if err != nil {
		return nil, "", err
	}
	ns, _, err := o.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, "", err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	return c, ns, err
}

// enrollments returns user's enrollments in ns (under o.policy, when set), found by spec.user as the
// verifier finds them; ErrNotFound when there is none.
func (o *options) enrollments(ctx context.Context, c client.Client, ns, user string) ([]v1alpha1.UserEnrollment, error) {
	var list v1alpha1.UserEnrollmentList
	if err := c.List(ctx, &list, client.InNamespace(ns), client.MatchingFields{"spec.user": user}); err != nil {
		return nil, fmt.Errorf("listing userenrollments: %w", err)
	}
	var out []v1alpha1.UserEnrollment
	for _, e := range list.Items {
		if o.policy == "" || e.Spec.PolicyRef.Name == o.policy {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		where := ""
		if o.policy != "" {
			where = " under policy " + o.policy
		}
		return nil, fmt.Errorf("%w: user %q has no enrollment%s in namespace %s", ErrNotFound, user, where, ns)
	}
	return out, nil
}

// eachEnrollment calls do for each of user's enrollments (see enrollments), in the flags' namespace.
func (o *options) eachEnrollment(ctx context.Context, user string, do func(c client.Client, e *v1alpha1.UserEnrollment) error) error {
	c, ns, err := o.client()
	if err != nil {
		return err
	}
	items, err := o.enrollments(ctx, c, ns, user)
	if err != nil {
		return err
	}
	for i := range items {
		if err := do(c, &items[i]); err != nil {
			return err
		}
	}
	return nil
}

// confirm asks the operator question on the plugin's streams and reports whether they answered yes.
func (o *options) confirm(question string) bool {
	_, _ = fmt.Fprintf(o.streams.Out, "%s [y/N] ", question)
	answer, _ := bufio.NewReader(o.streams.In).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return true
	}
	return false
}
