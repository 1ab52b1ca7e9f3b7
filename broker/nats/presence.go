package nats

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/wsasync/wsasync"
)

// Presence lives in the bucket <prefix>_USERS: one key per user with at
// least one client, "u" + the user id in unpadded base64url, whose value is
// the JSON object {client id: node id}. Every change is a compare-and-set on
// that one key (retried on conflict), so the write that adds a user's first
// client, or removes its last one, is decided once, by the node whose write
// won. A user left with no client is deleted.

// owners maps a user's client ids to the nodes they belong to.
type owners map[string]string

func userKey(uid string) string {
	return "u" + base64.RawURLEncoding.EncodeToString([]byte(uid))
}

func userOf(key string) (string, bool) {
	enc, ok := strings.CutPrefix(key, "u")
	if !ok {
		return "", false
	}
	uid, err := base64.RawURLEncoding.DecodeString(enc)
	return string(uid), err == nil
}

// Connect records clientID of uid as this node's; opened reports that uid
// had no client before, anywhere. The node remembers the client even when
// the call fails, and records it again when the server is back.
func (b *Broker) Connect(ctx context.Context, uid, clientID string) (bool, error) {
	mu := b.lock(clientID)
	mu.Lock()
	defer mu.Unlock()
	b.mu.Lock()
	b.local[clientID] = uid
	delete(b.gone, clientID)
	b.mu.Unlock()
	opened, err := b.connect(ctx, uid, clientID)
	if err != nil {
		return false, fmt.Errorf("nats broker: connect client %q: %w", clientID, err)
	}
	return opened, nil
}

func (b *Broker) connect(ctx context.Context, uid, clientID string) (bool, error) {
	if err := b.ensureAlive(ctx); err != nil {
		return false, err
	}
	before, _, _, err := b.updateUser(ctx, uid, func(m owners) bool {
		m[clientID] = b.node // written even when it is there: see reap
		return true
	})
	return before == 0, err
}

// Disconnect forgets clientID of uid if it is this node's; closed reports
// that uid has no client left. When the call fails, the node retries when
// the server is back.
func (b *Broker) Disconnect(ctx context.Context, uid, clientID string) (bool, error) {
	mu := b.lock(clientID)
	mu.Lock()
	defer mu.Unlock()
	b.mu.Lock()
	u, ok := b.local[clientID]
	mine := ok && u == uid
	if mine {
		delete(b.local, clientID)
	}
	b.mu.Unlock()
	_, closed, err := b.disconnect(ctx, uid, clientID)
	if err != nil {
		if mine {
			b.mu.Lock()
			b.gone[clientID] = uid
			b.mu.Unlock()
		}
		return false, fmt.Errorf("nats broker: disconnect client %q: %w", clientID, err)
	}
	return closed, nil
}

// disconnect removes clientID from uid's clients if it is this node's.
func (b *Broker) disconnect(ctx context.Context, uid, clientID string) (removed, closed bool, err error) {
	_, after, removed, err := b.updateUser(ctx, uid, func(m owners) bool {
		if m[clientID] != b.node {
			return false
		}
		delete(m, clientID)
		return true
	})
	return removed, removed && after == 0, err
}

// Users returns the users with at least one client, sorted.
func (b *Broker) Users(ctx context.Context) ([]string, error) {
	entries, err := list(ctx, b.users, jetstream.MetaOnly())
	if err != nil {
		return nil, fmt.Errorf("nats broker: users: %w", err)
	}
	users := make([]string, 0, len(entries))
	for _, e := range entries {
		uid, ok := userOf(e.Key())
		if !ok {
			b.log.Error("nats broker: foreign key in users bucket skipped", "key", e.Key())
			continue
		}
		users = append(users, uid)
	}
	slices.Sort(users)
	return users, nil
}

// updateUser applies change to uid's clients and writes them back if it
// reports a change, compare-and-set, starting again on conflict. It returns
// how many clients uid had before and after the write.
func (b *Broker) updateUser(ctx context.Context, uid string, change func(owners) bool) (before, after int, changed bool, err error) {
	key := userKey(uid)
	for attempt := 0; ; attempt++ {
		m, rev, err := b.getUser(ctx, key)
		if err != nil {
			return 0, 0, false, err
		}
		before = len(m)
		if !change(m) {
			return before, before, false, nil
		}
		switch {
		case len(m) == 0 && rev == 0:
			return before, 0, false, nil
		case len(m) == 0:
			err = b.users.Delete(ctx, key, jetstream.LastRevision(rev))
		case rev == 0:
			v, _ := json.Marshal(m)
			_, err = b.users.Create(ctx, key, v)
		default:
			v, _ := json.Marshal(m)
			_, err = b.users.Update(ctx, key, v, rev)
		}
		if err == nil {
			return before, len(m), true, nil
		}
		if !conflict(err) {
			return 0, 0, false, err
		}
		if attempt > 2 && !sleep(ctx, wsasync.Backoff(attempt-2, time.Millisecond, 100*time.Millisecond, rand.Float64())) {
			return 0, 0, false, ctx.Err()
		}
	}
}

// getUser reads a user's clients and the key's revision (0: no key). A
// value that is not ours is logged and counts as no client, to be replaced.
func (b *Broker) getUser(ctx context.Context, key string) (owners, uint64, error) {
	e, err := b.users.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return owners{}, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	m := owners{}
	if err := json.Unmarshal(e.Value(), &m); err != nil {
		b.log.Error("nats broker: corrupt presence entry replaced", "key", key, "err", err)
		m = owners{}
	}
	return m, e.Revision(), nil
}

// list returns the entries of a bucket (without deleted keys).
func list(ctx context.Context, kv jetstream.KeyValue, opts ...jetstream.WatchOpt) ([]jetstream.KeyValueEntry, error) {
	w, err := kv.WatchAll(ctx, append(opts, jetstream.IgnoreDeletes())...)
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var entries []jetstream.KeyValueEntry
	for {
		select {
		case e := <-w.Updates():
			if e == nil {
				return entries, nil
			}
			entries = append(entries, e)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
