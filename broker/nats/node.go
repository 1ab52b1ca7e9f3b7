package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/wsasync/wsasync/sente"
)

// Liveness: a node puts its id in <prefix>_ALIVE, whose entries expire
// after NodeTTL, and refreshes it every NodeTTL/3 with a compare-and-set on
// its revision; that fails once the entry has expired, and the node then
// knows it was presumed dead and records itself and its clients again. A
// node also puts its id in <prefix>_NODES, which does not expire: a node
// listed there but not alive is dead, and reap removes its clients.

type liveness struct {
	mu  sync.Mutex
	rev uint64    // of this node's liveness entry; 0: put it again
	at  time.Time // when the last refresh was sent
}

// ensureAlive refreshes the liveness entry if the last refresh is old
// enough that the entry may have expired, so that the node does not record
// a client while it may be presumed dead.
func (b *Broker) ensureAlive(ctx context.Context) error {
	b.hb.mu.Lock()
	defer b.hb.mu.Unlock()
	if b.hb.rev != 0 && time.Since(b.hb.at) < b.opts.NodeTTL*2/3 {
		return nil
	}
	return b.beatLocked(ctx)
}

// beat refreshes the liveness entry, or puts it again when it expired.
func (b *Broker) beat(ctx context.Context) error {
	b.hb.mu.Lock()
	defer b.hb.mu.Unlock()
	return b.beatLocked(ctx)
}

func (b *Broker) beatLocked(ctx context.Context) error {
	sent := time.Now()
	val := []byte(sent.UTC().Format(time.RFC3339Nano))
	if b.hb.rev != 0 {
		rev, err := b.alive.Update(ctx, b.node, val, b.hb.rev)
		if err == nil {
			b.hb.rev, b.hb.at = rev, sent
			return nil
		}
		if !conflict(err) {
			return fmt.Errorf("nats broker: liveness: %w", err)
		}
		b.log.Warn("nats broker: this node's liveness expired (presumed dead): recording it and its clients again")
		b.hb.rev = 0
		b.resync.Store(true)
	}
	// The liveness entry first, then the member entry: see reap.
	rev, err := b.alive.Put(ctx, b.node, val)
	if err != nil {
		return fmt.Errorf("nats broker: liveness: %w", err)
	}
	if _, err := b.nodes.Put(ctx, b.node, []byte(b.node)); err != nil {
		return fmt.Errorf("nats broker: member entry: %w", err)
	}
	b.hb.rev, b.hb.at = rev, sent
	return nil
}

// run keeps the node alive and reaps dead nodes, every NodeTTL/3, until ctx
// ends; after a failure it retries sooner, with backoff.
func (b *Broker) run(ctx context.Context, h sente.Handler) {
	period := b.opts.NodeTTL / 3
	level := 0
	for {
		rc := b.reconnected()
		wait := period
		if err := b.tick(ctx, h); err != nil {
			if ctx.Err() != nil {
				return
			}
			level++
			wait = backoff(level, period)
			b.log.Warn("nats broker: presence upkeep failed; retrying", "in", wait, "err", err)
		} else {
			level = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-rc:
			b.resync.Store(true)
		case <-t.C:
		}
		t.Stop()
	}
}

// tick is one round of run.
func (b *Broker) tick(ctx context.Context, h sente.Handler) error {
	ctx, cancel := context.WithTimeout(ctx, max(b.opts.NodeTTL, requestTimeout))
	defer cancel()
	if err := b.beat(ctx); err != nil {
		b.resync.Store(true)
		if b.nc.IsConnected() { // in case the buckets were deleted
			if err := b.buckets(ctx, false); err != nil {
				b.log.Warn("nats broker: presence buckets", "err", err)
			}
		}
		return err
	}
	if b.resync.Load() {
		if err := b.recordAgain(ctx, h); err != nil {
			return err
		}
	}
	return b.reap(ctx, h)
}

// recordAgain records this node's clients again, after an outage or after
// the node was presumed dead, reporting UserOpened for a client whose user
// turned out to have none; and retries the disconnects that failed,
// reporting ClientGone for each client removed.
func (b *Broker) recordAgain(ctx context.Context, h sente.Handler) error {
	b.resync.Store(false)
	b.mu.Lock()
	local, gone := maps.Clone(b.local), maps.Clone(b.gone)
	b.mu.Unlock()
	var failed error
	for clientID, uid := range local {
		opened, err := b.recordClient(ctx, uid, clientID)
		if err != nil {
			failed = err
		} else if opened {
			report(h, sente.Presence{Kind: sente.UserOpened, UserID: uid, ClientID: clientID})
		}
	}
	for clientID, uid := range gone {
		removed, closed, err := b.retryDisconnect(ctx, uid, clientID)
		if err != nil {
			failed = err
		} else if removed {
			report(h, sente.Presence{Kind: sente.ClientGone, UserID: uid, ClientID: clientID, UserClosed: closed})
		}
	}
	if failed != nil {
		b.resync.Store(true)
		return fmt.Errorf("nats broker: recording clients again: %w", failed)
	}
	return nil
}

// recordClient records a client of this node again, unless it was
// disconnected meanwhile.
func (b *Broker) recordClient(ctx context.Context, uid, clientID string) (opened bool, err error) {
	mu := b.lock(clientID)
	mu.Lock()
	defer mu.Unlock()
	b.mu.Lock()
	u, ok := b.local[clientID]
	b.mu.Unlock()
	if !ok || u != uid {
		return false, nil
	}
	return b.connect(ctx, uid, clientID)
}

// retryDisconnect retries a failed disconnect, unless the client was
// connected again meanwhile.
func (b *Broker) retryDisconnect(ctx context.Context, uid, clientID string) (removed, closed bool, err error) {
	mu := b.lock(clientID)
	mu.Lock()
	defer mu.Unlock()
	b.mu.Lock()
	u, ok := b.gone[clientID]
	b.mu.Unlock()
	if !ok || u != uid {
		return false, false, nil
	}
	removed, closed, err = b.disconnect(ctx, uid, clientID)
	if err == nil {
		b.mu.Lock()
		delete(b.gone, clientID)
		b.mu.Unlock()
	}
	return removed, closed, err
}

// reap removes the clients of dead nodes: nodes with a member entry but no
// liveness entry. Each removal is a compare-and-set on the user's key, made
// after checking again, after reading that key, that the node is still
// dead: a node that comes back puts its liveness entry before it records
// its clients again, so either the check sees it alive or its write makes
// the removal fail. So each removed client is reported once, by the node
// whose write won. After a pass without error, a dead node's member entry
// is deleted, compare-and-set on the revision read at the start of the
// pass (a node that came back has put it again).
func (b *Broker) reap(ctx context.Context, h sente.Handler) error {
	members, err := list(ctx, b.nodes)
	if err != nil {
		return fmt.Errorf("nats broker: nodes: %w", err)
	}
	dead := make(map[string]uint64)
	for _, e := range members {
		if e.Key() == b.node {
			continue
		}
		alive, err := b.isAlive(ctx, e.Key())
		if err != nil {
			return err
		}
		if !alive {
			dead[e.Key()] = e.Revision()
		}
	}
	if len(dead) == 0 {
		return nil
	}
	entries, err := list(ctx, b.users)
	if err != nil {
		return fmt.Errorf("nats broker: users: %w", err)
	}
	var failed error
	for _, e := range entries {
		var m owners
		if json.Unmarshal(e.Value(), &m) != nil || !ownedBy(m, dead) {
			continue
		}
		uid, ok := userOf(e.Key())
		if !ok {
			continue
		}
		var removed []string
		_, after, changed, err := b.updateUser(ctx, uid, func(m owners) bool {
			removed = removed[:0]
			checked := make(map[string]bool) // node → dead
			for clientID, node := range m {
				if _, ok := dead[node]; !ok {
					continue
				}
				isDead, ok := checked[node]
				if !ok {
					alive, err := b.isAlive(ctx, node)
					if err != nil {
						failed = err
					}
					isDead = err == nil && !alive
					checked[node] = isDead
				}
				if isDead {
					delete(m, clientID)
					removed = append(removed, clientID)
				}
			}
			return len(removed) > 0
		})
		if err != nil {
			failed = err
			continue
		}
		if !changed {
			continue
		}
		slices.Sort(removed)
		for i, clientID := range removed {
			report(h, sente.Presence{Kind: sente.ClientGone, UserID: uid, ClientID: clientID,
				UserClosed: after == 0 && i == len(removed)-1})
		}
	}
	if failed != nil {
		return fmt.Errorf("nats broker: reaping: %w", failed)
	}
	for node, rev := range dead {
		err := b.nodes.Delete(ctx, node, jetstream.LastRevision(rev))
		if err == nil {
			b.log.Info("nats broker: reaped a dead node", "dead", node)
		} else if !conflict(err) {
			return fmt.Errorf("nats broker: reaping: %w", err)
		}
	}
	return nil
}

// isAlive reports whether node has a liveness entry.
func (b *Broker) isAlive(ctx context.Context, node string) (bool, error) {
	_, err := b.alive.Get(ctx, node)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("nats broker: liveness of %s: %w", node, err)
	}
	return true, nil
}

// ownedBy reports whether one of m's clients belongs to one of nodes.
func ownedBy(m owners, nodes map[string]uint64) bool {
	for _, node := range m {
		if _, ok := nodes[node]; ok {
			return true
		}
	}
	return false
}
