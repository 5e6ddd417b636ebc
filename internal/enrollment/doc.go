// Package enrollment holds every rule about a UserEnrollment that the manager, the verifier and the
// benchmark must agree on, in one place:
//
//   - which enrollment is a user's when several name them (Winner, Precedes);
//   - the lockout state machine: how wrong codes lock an enrollment and how a lock ends, by its throttle or
//     by an administrator's unlock (Attempt, Expire, Unlock);
//   - confirmation and the binding of verification state to one key (Confirm, BindKey);
//   - the conditions every client reads, derived from facts alone (Ready, SetConditions), and a policy's
//     counts (Count).
//
// It is pure: time is passed in, nothing is read or written outside the values it is given.
package enrollment
