package verifier

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/lru"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

// Bounds of what a replica remembers of its users: an enrollment is about 1.5 KB, a parsed key a few hundred
// bytes. A replica's memory grows with the users asking, up to these, never with the users enrolled.
const (
	DefaultRememberedUsers = 10000
	DefaultRememberedKeys  = 10000
)

// directory remembers the enrollments and keys a replica read from the API server, until a watch says they
// changed. Nothing is read ahead: an enrollment is read on its user's first request, a key on its first
// check (see Verifier.enrollment and Verifier.key), and both are remembered in bounded LRUs.
//
// A read is remembered only when no change of what it read was seen while it was under way: the reads are
// consistent (they return every write that completed before they began), so a change that completed
// before the read is in what it returned, and a change seen after the read began keeps it from being
// remembered, or evicts it. While the watches do not run (before they start, or after one ended until it
// is started again) nothing is remembered and every request reads.
type directory struct {
	mu    sync.Mutex
	users *lru.Cache // user → userEntry
	keys  *lru.Cache // Secret UID → parsedKey
	// changes numbers the changes of enrollments seen; evicted is the newest change among the users whose
	// record the LRU dropped. keyChanges counts the Secret deletions seen.
	changes, evicted uint64
	keyChanges       uint64
	// watching counts the watches running; all of them run when it is watches.
	watching, watches int
}

// userEntry is what a replica knows of a user's enrollment: the enrollment (nil: the user has none) when
// known, and the number of the last change seen of it.
type userEntry struct {
	e       *v1alpha1.UserEnrollment
	known   bool
	changed uint64
}

func newDirectory(watches int) *directory {
	d := &directory{watches: watches, keys: lru.New(DefaultRememberedKeys)}
	d.users = lru.NewWithEvictionFunc(DefaultRememberedUsers, func(_ lru.Key, v any) {
		d.evicted = max(d.evicted, v.(userEntry).changed) // under d.mu: every Add and Remove is
	})
	return d
}

// user returns the user's remembered enrollment (nil: none), and whether it is remembered.
func (d *directory) user(user string) (*v1alpha1.UserEnrollment, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.users.Get(user)
	if !ok || !v.(userEntry).known {
		return nil, false
	}
	return v.(userEntry).e, true
}

// reading marks the start of a read of what it returns: the mark settle takes.
func (d *directory) reading() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.changes
}

// settle remembers e (nil: none) as user's enrollment, read by a read that began at mark, unless a change of
// it was seen since, or might have been (its record evicted), or the watches do not run.
func (d *directory) settle(user string, mark uint64, e *v1alpha1.UserEnrollment) {
	d.mu.Lock()
	defer d.mu.Unlock()
	last := d.evicted
	if v, ok := d.users.Get(user); ok {
		last = v.(userEntry).changed
	}
	if last > mark || d.watching < d.watches {
		return
	}
	d.users.Add(user, userEntry{e: e, known: true, changed: last})
}

// changed forgets user's enrollment: the watch saw it change (created, updated, deleted).
func (d *directory) changed(user string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.changes++
	d.users.Add(user, userEntry{changed: d.changes})
}

// key returns the parsed key of the Secret uid, when remembered.
func (d *directory) key(uid types.UID) (parsedKey, bool) {
	v, ok := d.keys.Get(uid)
	if !ok {
		return parsedKey{}, false
	}
	return v.(parsedKey), true
}

// keyMark marks the start of a read of a key: the mark settleKey takes.
func (d *directory) keyMark() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.keyChanges
}

// settleKey remembers the key of Secret uid, read by a read that began at mark, unless a Secret was seen
// deleted since or the watches do not run.
func (d *directory) settleKey(uid types.UID, mark uint64, k parsedKey) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.keyChanges == mark && d.watching == d.watches {
		d.keys.Add(uid, k)
	}
}

// keyGone forgets the key of Secret uid: the watch saw it deleted.
func (d *directory) keyGone(uid types.UID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.keyChanges++
	d.keys.Remove(uid)
}

// started records that a watch runs; stopped that one ended, which forgets everything: changes may be missed
// until it runs again.
func (d *directory) started() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.watching++
}

func (d *directory) stopped() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.watching--
	d.changes++
	d.keyChanges++
	d.users.Clear()
	d.keys.Clear()
	d.evicted = d.changes
}

// current reports whether all watches run: what the replica remembers is current.
func (d *directory) current() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.watching == d.watches
}
