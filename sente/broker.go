package sente

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Target says who a push is for.
type Target uint8

// Push targets.
const (
	ToUser   Target = iota + 1 // every connection of a user id
	ToClient                   // the connection of one client id
	ToAll                      // every connection
)

// A Position is a place in the log of pushes that a broker keeps for the
// whole cluster. Every push gets the next position when it is published; a
// client remembers the position of the last push it received and gives it
// back when it reconnects, to any node, to receive what it missed.
type Position struct {
	// Epoch names one history. A broker that lost its history (a restart
	// without persistence) starts a new epoch, and positions of an older
	// one can no longer be resumed.
	Epoch string
	// Seq grows with every push within an epoch; 0 is before the first.
	Seq uint64
}

// IsZero reports whether p is no position at all.
func (p Position) IsZero() bool { return p.Epoch == "" && p.Seq == 0 }

// String packs p as "<epoch>.<seq>", the form clients keep (see
// PROTOCOL.md).
func (p Position) String() string {
	if p.IsZero() {
		return ""
	}
	return p.Epoch + "." + strconv.FormatUint(p.Seq, 10)
}

// ErrBadPosition reports a position that is not "<epoch>.<seq>".
var ErrBadPosition = errors.New("sente: malformed position")

// ParsePosition reads a position made by [Position.String].
func ParsePosition(s string) (Position, error) {
	i := strings.LastIndexByte(s, '.')
	if i <= 0 || i > 64 {
		return Position{}, fmt.Errorf("%w: %q", ErrBadPosition, s)
	}
	seq, err := strconv.ParseUint(s[i+1:], 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("%w: %q", ErrBadPosition, s)
	}
	return Position{Epoch: s[:i], Seq: seq}, nil
}

// NewEpoch returns a random epoch name, for brokers starting a history.
func NewEpoch() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// A Push is one event on its way to connections, on every node.
type Push struct {
	Target Target
	// To is the user id (ToUser) or the client id (ToClient).
	To string
	// Event is the packed event [id, data].
	Event []byte
	// Flush sends it without waiting for the batching window.
	Flush bool
	// Pos is the push's place in the log, set by the broker when it
	// delivers the push; zero on a push that is not in the log.
	Pos Position
	// Gap, set by the broker on a push it delivers, says that this node
	// missed pushes just before it (it fell further behind than the
	// broker's history). The server then makes its clients resume, which
	// tells them that pushes were lost.
	Gap bool
}

// PresenceKind says what a [Presence] change is.
type PresenceKind uint8

// Presence changes a broker reports on its own.
const (
	// ClientGone: a client of another node left presence because that
	// node stopped (its liveness expired); UserClosed tells whether its
	// user has no client left.
	ClientGone PresenceKind = iota + 1
	// UserOpened: a connection of this node that the broker could not
	// record during an outage was recorded afterwards, and its user had no
	// client before.
	UserOpened
)

// Presence is a change of presence that the broker decided itself rather
// than in answer to Connect or Disconnect. Exactly one node is told of each.
type Presence struct {
	Kind       PresenceKind
	UserID     string
	ClientID   string
	UserClosed bool // with ClientGone
}

// Handler receives what a broker delivers to one node.
type Handler struct {
	// Push receives every push published by any node, this one included,
	// in log order, from one goroutine at a time. It must not block for
	// long.
	Push func(Push)
	// Presence receives the changes the broker decided itself. It may be
	// nil.
	Presence func(Presence)
}

// A Broker carries pushes and presence between the nodes that serve one
// application, and keeps the recent log of pushes for clients that resume.
// The default, [MemoryBroker], serves a single process; the modules
// github.com/wsasync/wsasync/broker/redis and .../broker/nats let several
// nodes share users. One Broker value serves one Server: it stands for the
// node in the cluster.
//
// Presence is counted per client: Connect and Disconnect report when a user
// gains its first client or loses its last one anywhere, so that exactly one
// node reports each change. A client belongs to the node that connected it
// last; Disconnect from another node leaves it alone.
type Broker interface {
	// Subscribe starts delivery to h until ctx ends. It returns a
	// position at or after the last push published before it, and
	// before every later push, which reaches h.Push.
	Subscribe(ctx context.Context, h Handler) (Position, error)
	// Publish appends p to the log and sends it to every subscribed node.
	Publish(ctx context.Context, p Push) error
	// Connect records a client of uid on this node, taking it from any
	// other node that had it; the server calls it again for a client
	// that returns within its grace period (another node may have taken
	// it meanwhile). opened reports that uid had no client before.
	Connect(ctx context.Context, uid, clientID string) (opened bool, err error)
	// Disconnect forgets a client of uid if it is this node's; closed
	// reports that uid has no client left.
	Disconnect(ctx context.Context, uid, clientID string) (closed bool, err error)
	// Users returns the ids of the users with at least one client.
	Users(ctx context.Context) ([]string, error)
	// Replay calls fn with every push after from up to and including to,
	// in order. lost reports that the log no longer reaches back to from
	// (it was trimmed, or from is of another epoch): pushes may be
	// missing.
	Replay(ctx context.Context, from, to Position, fn func(Push)) (lost bool, err error)
}

// MemoryBroker is the broker of a single process, for one Server. Its zero
// value is ready to use. It keeps no history of its own: the server's
// recent log covers every push since it started.
type MemoryBroker struct {
	mu      sync.Mutex
	epoch   string
	seq     uint64
	subs    map[*Handler]struct{}
	clients map[string]map[string]struct{} // uid → client ids
}

func (b *MemoryBroker) initLocked() {
	if b.epoch == "" {
		b.epoch = NewEpoch()
	}
}

// Subscribe registers h until ctx ends; then, the node having left, its
// clients are forgotten.
func (b *MemoryBroker) Subscribe(ctx context.Context, h Handler) (Position, error) {
	key := &h
	b.mu.Lock()
	b.initLocked()
	if b.subs == nil {
		b.subs = make(map[*Handler]struct{})
	}
	b.subs[key] = struct{}{}
	pos := Position{Epoch: b.epoch, Seq: b.seq}
	b.mu.Unlock()
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		delete(b.subs, key)
		clear(b.clients)
		b.mu.Unlock()
	})
	return pos, nil
}

// Publish numbers p and calls every subscriber in the caller's goroutine,
// one push at a time so that they see the log's order.
func (b *MemoryBroker) Publish(ctx context.Context, p Push) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.initLocked()
	b.seq++
	p.Pos = Position{Epoch: b.epoch, Seq: b.seq}
	for h := range b.subs {
		h.Push(p)
	}
	return nil
}

// Replay has nothing to replay: it reports lost when pushes were made after
// from (a server resumes from its own log before it asks).
func (b *MemoryBroker) Replay(ctx context.Context, from, to Position, fn func(Push)) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.initLocked()
	return from.Epoch != b.epoch || from.Seq < to.Seq, nil
}

// Connect records a client.
func (b *MemoryBroker) Connect(ctx context.Context, uid, clientID string) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.clients == nil {
		b.clients = make(map[string]map[string]struct{})
	}
	set := b.clients[uid]
	if set == nil {
		set = make(map[string]struct{})
		b.clients[uid] = set
	}
	if _, ok := set[clientID]; ok {
		return false, nil // again: it was connected already
	}
	set[clientID] = struct{}{}
	return len(set) == 1, nil
}

// Disconnect forgets a client.
func (b *MemoryBroker) Disconnect(ctx context.Context, uid, clientID string) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	set, ok := b.clients[uid]
	if !ok {
		return false, nil
	}
	if _, ok := set[clientID]; !ok {
		return false, nil
	}
	delete(set, clientID)
	if len(set) > 0 {
		return false, nil
	}
	delete(b.clients, uid)
	return true, nil
}

// Users lists the connected users, sorted.
func (b *MemoryBroker) Users(ctx context.Context) ([]string, error) {
	b.mu.Lock()
	users := make([]string, 0, len(b.clients))
	for uid := range b.clients {
		users = append(users, uid)
	}
	b.mu.Unlock()
	slices.Sort(users)
	return users, nil
}
