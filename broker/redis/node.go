package redis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wsasync/wsasync"
	"github.com/wsasync/wsasync/sente"
)

// Liveness: a subscribed node refreshes its score in <prefix>:nodes (the
// time its record expires, by Redis's clock) every NodeTTL/3, and removes
// the clients of one expired node after another, a batch per script call:
// a client popped from the dead node's set by one node is gone for the
// others, so exactly one node reports it.

// heartbeatLua refreshes this node's record. KEYS: nodes. ARGV: node, TTL in
// ms. It returns 1 when the record was missing or expired: other nodes may
// have removed this node's clients.
var heartbeatLua = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[1])
if not old or tonumber(old) < now then return 1 end
return 0
`)

// reapLua removes up to ARGV[2] clients of one expired node other than the
// caller (a node that finds its own record expired refreshes it and records
// its clients again). KEYS: nodes, clients, users. ARGV: node key prefix,
// batch size, caller. It returns {} when no node expired, else {node,
// member, closed, member, closed, ...}, closed being 1 when the member's
// user has no client left.
var reapLua = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.0f', now), 'LIMIT', 0, 2)
local node = dead[1]
if node == ARGV[3] then node = dead[2] end
if not node then return {} end
local set = ARGV[1] .. node
local out = {node}
for _, m in ipairs(redis.call('SPOP', set, ARGV[2])) do
  if redis.call('HGET', KEYS[2], m) == node then
    redis.call('HDEL', KEYS[2], m)
    redis.call('HDEL', KEYS[4], m)
    local colon = string.find(m, ':', 1, true)
    local n = colon and tonumber(string.sub(m, 1, colon - 1))
    local closed = 0
    if n then
      local uid = string.sub(m, colon + 1, colon + n)
      if redis.call('HINCRBY', KEYS[3], uid, -1) <= 0 then
        redis.call('HDEL', KEYS[3], uid)
        closed = 1
      end
    end
    out[#out+1] = m
    out[#out+1] = closed
  end
end
if redis.call('SCARD', set) == 0 then
  redis.call('ZREM', KEYS[1], node)
end
return out
`)

// heartbeat refreshes the node's record, and asks for a resync when the
// record had expired.
func (b *Broker) heartbeat(ctx context.Context) error {
	gone, err := heartbeatLua.Run(ctx, b.rdb, []string{b.keys.nodes}, b.node, b.keys.ttl).Int()
	if err != nil {
		return fmt.Errorf("liveness record: %w", err)
	}
	if gone == 1 {
		select {
		case b.dirty <- struct{}{}:
		default:
		}
	}
	return nil
}

// run keeps the node alive and reaps dead nodes every NodeTTL/3 until ctx
// ends; after a failure it tries again with backoff.
func (b *Broker) run(ctx context.Context, h sente.Handler) {
	every := b.opts.NodeTTL / 3
	t := time.NewTimer(0)
	defer t.Stop()
	level := 0
	for {
		kick := b.kick
		if level > 0 {
			kick = nil // keep to the backoff
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
		}
		err := b.beat(ctx, h)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			level++
			b.log.Warn("redis broker: node upkeep failed", "node", b.node, "attempt", level, "err", err)
			t.Reset(wsasync.Backoff(level, 50*time.Millisecond, min(2*time.Second, every), rand.Float64()))
		default:
			if level > 0 {
				b.log.Info("redis broker: node upkeep works again", "node", b.node)
			}
			level = 0
			t.Reset(every)
		}
	}
}

// beat is one round of upkeep.
func (b *Broker) beat(ctx context.Context, h sente.Handler) error {
	if err := b.heartbeat(ctx); err != nil {
		return err
	}
	if err := b.resync(ctx, h); err != nil {
		return err
	}
	return b.reap(ctx, h)
}

// reap removes the clients of expired nodes, reporting each to h.
func (b *Broker) reap(ctx context.Context, h sente.Handler) error {
	keys := []string{b.keys.nodes, b.keys.clients, b.keys.users, b.keys.since}
	for range 1000 { // at most 256k clients per beat; the next beat goes on
		v, err := reapLua.Run(ctx, b.rdb, keys, b.keys.nodePrefix, 256, b.node).Slice()
		if err != nil {
			return fmt.Errorf("removing dead nodes: %w", err)
		}
		if len(v) == 0 {
			return nil
		}
		node, _ := v[0].(string)
		for i := 1; i+1 < len(v); i += 2 {
			m, _ := v[i].(string)
			closed, _ := v[i+1].(int64)
			c, ok := splitMember(m)
			if !ok {
				b.log.Warn("redis broker: removed a malformed client entry", "node", node, "member", m)
				continue
			}
			b.log.Debug("redis broker: client of a dead node gone", "node", node, "uid", c.uid, "client", c.id, "user_closed", closed == 1)
			if h.Presence != nil {
				h.Presence(sente.Presence{Kind: sente.ClientGone, UserID: c.uid, ClientID: c.id, UserClosed: closed == 1})
			}
		}
	}
	return nil
}
