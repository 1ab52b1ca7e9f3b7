package sente

import (
	"context"
	"slices"
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

// A Push is one event on its way to connections, on every node.
type Push struct {
	Target Target
	// To is the user id (ToUser) or the client id (ToClient).
	To string
	// Event is the packed event [id, data].
	Event []byte
	// Flush sends it without waiting for the batching window.
	Flush bool
}

// A Broker carries pushes and presence between the nodes that serve one
// application. The default, [MemoryBroker], serves a single process; brokers
// on Redis or NATS let several nodes share users.
//
// Presence is counted per client: Connect and Disconnect report when a user
// gains its first client or loses its last one anywhere, so that exactly one
// node reports each change.
type Broker interface {
	// Subscribe makes deliver receive every push published by any node,
	// until ctx ends. deliver must not block for long.
	Subscribe(ctx context.Context, deliver func(Push)) error
	// Publish sends p to every subscribed node, this one included.
	Publish(ctx context.Context, p Push) error
	// Connect records a client of uid; opened reports that uid had no
	// client before.
	Connect(ctx context.Context, uid, clientID string) (opened bool, err error)
	// Disconnect forgets a client of uid; closed reports that uid has no
	// client left.
	Disconnect(ctx context.Context, uid, clientID string) (closed bool, err error)
	// Users returns the ids of the users with at least one client.
	Users(ctx context.Context) ([]string, error)
}

// MemoryBroker is the broker of a single process. Its zero value is ready to
// use.
type MemoryBroker struct {
	mu      sync.Mutex
	subs    map[*func(Push)]struct{}
	clients map[string]map[string]struct{} // uid → client ids
}

// Subscribe registers deliver until ctx ends.
func (b *MemoryBroker) Subscribe(ctx context.Context, deliver func(Push)) error {
	key := &deliver
	b.mu.Lock()
	if b.subs == nil {
		b.subs = make(map[*func(Push)]struct{})
	}
	b.subs[key] = struct{}{}
	b.mu.Unlock()
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		delete(b.subs, key)
		b.mu.Unlock()
	})
	return nil
}

// Publish calls every subscriber's deliver in the caller's goroutine.
func (b *MemoryBroker) Publish(ctx context.Context, p Push) error {
	b.mu.Lock()
	subs := make([]func(Push), 0, len(b.subs))
	for f := range b.subs {
		subs = append(subs, *f)
	}
	b.mu.Unlock()
	for _, f := range subs {
		f(p)
	}
	return nil
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
