package redis

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wsasync/wsasync/sente"
)

// Presence is kept in
//
//	<prefix>:clients       hash  member → id of the node that owns the client
//	<prefix>:users         hash  user id → number of its clients
//	<prefix>:node:<node>   set   members owned by the node
//	<prefix>:nodes         zset  node → expiry of its liveness record (ms)
//
// where a member is "<len(uid)>:<uid>:<clientID>". Every change is one
// script, so that exactly one caller sees a user open or close.

// registerLua gives clients to this node. KEYS: clients, users, node set,
// since. ARGV: node, node key prefix, "take" or "restore", then member, uid,
// connect time (Unix ms) triples. "take" takes a client from the node that
// has it (a Connect) unless that node connected it later (two Connects that
// failed during an outage, recorded afterwards in any order: the later one
// wins); "restore" records it only if no node has it, since a client of
// this node that another node has connected since is that node's. It
// returns the user ids that gained their first client.
var registerLua = goredis.NewScript(`
local opened = {}
local take = ARGV[3] == 'take'
for i = 4, #ARGV, 3 do
  local m, uid, at = ARGV[i], ARGV[i+1], tonumber(ARGV[i+2])
  local old = redis.call('HGET', KEYS[1], m)
  local later = tonumber(redis.call('HGET', KEYS[4], m) or '0') > at
  if old ~= ARGV[1] and ((take and not (old and later)) or not old) then
    redis.call('HSET', KEYS[1], m, ARGV[1])
    redis.call('HSET', KEYS[4], m, at)
    redis.call('SADD', KEYS[3], m)
    if old then
      redis.call('SREM', ARGV[2] .. old, m)
    elseif redis.call('HINCRBY', KEYS[2], uid, 1) == 1 then
      opened[#opened+1] = uid
    end
  end
end
return opened
`)

// unregisterLua removes a client if this node owns it. KEYS: clients,
// users, node set, since. ARGV: node, member, uid. It returns -1 when the client is
// not this node's, 1 when its user has no client left, 0 otherwise.
var unregisterLua = goredis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[2]) ~= ARGV[1] then return -1 end
redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[4], ARGV[2])
redis.call('SREM', KEYS[3], ARGV[2])
if redis.call('HINCRBY', KEYS[2], ARGV[3], -1) <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[3])
  return 1
end
return 0
`)

// A client is one (user, client id) pair of this node, and when this node
// connected it (Unix ms): the time its records carry, also when restored.
type client struct {
	uid, id string
	at      int64
}

func member(uid, clientID string) string {
	return strconv.Itoa(len(uid)) + ":" + uid + ":" + clientID
}

// splitMember reads a member back.
func splitMember(m string) (c client, ok bool) {
	for i := 0; i < len(m); i++ {
		if m[i] != ':' {
			continue
		}
		n, err := strconv.Atoi(m[:i])
		if err != nil || n < 0 || i+1+n >= len(m) || m[i+1+n] != ':' {
			return c, false
		}
		return client{uid: m[i+1 : i+1+n], id: m[i+2+n:]}, true
	}
	return c, false
}

// Connect records the client clientID of uid as this node's (taking it
// from another node if it was there). opened reports that uid had no client
// before, anywhere. The node remembers the client even when Connect fails,
// and records it once Redis answers again, reporting UserOpened then.
func (b *Broker) Connect(ctx context.Context, uid, clientID string) (opened bool, err error) {
	if err := b.alive(); err != nil {
		return false, err
	}
	m := member(uid, clientID)
	b.presMu.RLock()
	defer b.presMu.RUnlock()
	at := time.Now().UnixMilli()
	b.locMu.Lock()
	b.local[m] = client{uid, clientID, at}
	delete(b.stale, m)
	b.locMu.Unlock()
	ids, err := registerLua.Run(ctx, b.rdb, b.presenceKeys(), b.node, b.keys.nodePrefix, "take", m, uid, at).StringSlice()
	b.locMu.Lock()
	if err != nil {
		b.pending[m] = struct{}{}
	} else {
		delete(b.pending, m)
	}
	b.locMu.Unlock()
	if err != nil {
		b.resyncLater()
		return false, fmt.Errorf("redis broker: connect %q of user %q (recorded once Redis answers): %w", clientID, uid, err)
	}
	return len(ids) > 0, nil
}

// Disconnect removes the client clientID of uid if it is this node's; it
// does nothing (false, nil) if another node took it. closed reports that
// uid has no client left. When it fails, the node removes the client once
// Redis answers again, reporting ClientGone (with UserClosed) then.
func (b *Broker) Disconnect(ctx context.Context, uid, clientID string) (closed bool, err error) {
	if err := b.alive(); err != nil {
		return false, err
	}
	m := member(uid, clientID)
	b.presMu.RLock()
	defer b.presMu.RUnlock()
	b.locMu.Lock()
	c, mine := b.local[m]
	delete(b.local, m)
	delete(b.pending, m)
	b.locMu.Unlock()
	if !mine {
		return false, nil // never this node's
	}
	n, err := unregisterLua.Run(ctx, b.rdb, b.presenceKeys(), b.node, m, uid).Int()
	if err != nil {
		b.locMu.Lock()
		b.stale[m] = c
		b.locMu.Unlock()
		b.resyncLater()
		return false, fmt.Errorf("redis broker: disconnect %q of user %q (removed once Redis answers): %w", clientID, uid, err)
	}
	return n == 1, nil
}

// Users returns the ids of the users with at least one client, sorted.
func (b *Broker) Users(ctx context.Context) ([]string, error) {
	if err := b.alive(); err != nil {
		return nil, err
	}
	users, err := b.rdb.HKeys(ctx, b.keys.users).Result()
	if err != nil {
		return nil, fmt.Errorf("redis broker: users: %w", err)
	}
	slices.Sort(users)
	return users, nil
}

func (b *Broker) presenceKeys() []string {
	return []string{b.keys.clients, b.keys.users, b.keys.self, b.keys.since}
}

// resyncLater asks the node loop to record this node's clients again.
func (b *Broker) resyncLater() {
	select {
	case b.dirty <- struct{}{}:
	default:
	}
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// resync records this node's clients again, after an outage or after other
// nodes took the node for dead, reporting the users that open then; and
// removes the clients whose Disconnect failed, reporting them gone. It
// locks presMu per batch so that no Connect or Disconnect of this node runs
// meanwhile.
func (b *Broker) resync(ctx context.Context, h sente.Handler) error {
	select {
	case <-b.dirty:
	default:
		return nil
	}
	err := b.resyncAll(ctx, h)
	if err != nil {
		b.resyncLater()
	}
	return err
}

func (b *Broker) resyncAll(ctx context.Context, h sente.Handler) error {
	b.locMu.Lock()
	var take, restore, stale []string
	for m := range b.local {
		if _, ok := b.pending[m]; ok {
			take = append(take, m)
		} else {
			restore = append(restore, m)
		}
	}
	for m := range b.stale {
		stale = append(stale, m)
	}
	b.locMu.Unlock()

	// Clients whose Connect failed are taken as Connect would have; the
	// others are restored where missing (reaped, or Redis lost them).
	for _, batch := range []struct {
		mode    string
		members []string
	}{{"take", take}, {"restore", restore}} {
		if err := b.register(ctx, h, batch.mode, batch.members); err != nil {
			return err
		}
	}
	keys := b.presenceKeys()
	for _, m := range stale {
		b.presMu.Lock()
		b.locMu.Lock()
		c, ok := b.stale[m]
		b.locMu.Unlock()
		n := -1
		var err error
		if ok {
			n, err = unregisterLua.Run(ctx, b.rdb, keys, b.node, m, c.uid).Int()
			if err == nil {
				b.locMu.Lock()
				delete(b.stale, m)
				b.locMu.Unlock()
			}
		}
		b.presMu.Unlock()
		if err != nil {
			return fmt.Errorf("removing a client again: %w", err)
		}
		if n >= 0 {
			b.log.Info("redis broker: client gone after an outage", "uid", c.uid, "client", c.id, "user_closed", n == 1)
			if n == 1 && h.Presence != nil {
				h.Presence(sente.Presence{Kind: sente.ClientGone, UserID: c.uid, ClientID: c.id, UserClosed: true})
			}
		}
	}
	return nil
}

// register records members of this node's, in batches, reporting the users
// that open.
func (b *Broker) register(ctx context.Context, h sente.Handler, mode string, members []string) error {
	const chunk = 256
	keys := b.presenceKeys()
	for len(members) > 0 {
		n := min(chunk, len(members))
		args := []any{b.node, b.keys.nodePrefix, mode}
		b.presMu.Lock()
		b.locMu.Lock()
		for _, m := range members[:n] {
			if c, ok := b.local[m]; ok { // not disconnected meanwhile
				// With the time of its Connect, also when restored: a
				// node whose Connect of the same client came later and
				// is recorded later (it failed meanwhile) still wins.
				args = append(args, m, c.uid, c.at)
			}
		}
		b.locMu.Unlock()
		opened, err := registerLua.Run(ctx, b.rdb, keys, args...).StringSlice()
		if err == nil {
			b.locMu.Lock()
			for _, m := range members[:n] {
				delete(b.pending, m)
			}
			b.locMu.Unlock()
		}
		b.presMu.Unlock()
		if err != nil {
			return fmt.Errorf("recording clients again: %w", err)
		}
		members = members[n:]
		for _, uid := range opened {
			b.log.Info("redis broker: user open after an outage", "uid", uid)
			if h.Presence != nil {
				h.Presence(sente.Presence{Kind: sente.UserOpened, UserID: uid})
			}
		}
	}
	return nil
}
