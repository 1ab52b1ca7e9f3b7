// Package cluster tests Sente servers spread over several processes that
// share a broker (Redis or NATS): pushes, presence, the Ajax transport
// across nodes, resume after a node is killed, and broker restarts. Its
// command node (cmd/node) is one such server with a small control API, also
// used by the benchmarks in bench/.
package cluster

import (
	"fmt"
	"strings"

	"github.com/wsasync/wsasync/broker/nats"
	"github.com/wsasync/wsasync/broker/redis"
	"github.com/wsasync/wsasync/sente"
)

// Broker returns the broker that url names: redis://…, nats://…, or
// memory for "" (a single node).
func Broker(url string) (sente.Broker, func() error, error) {
	switch {
	case url == "" || url == "memory":
		return &sente.MemoryBroker{}, func() error { return nil }, nil
	case strings.HasPrefix(url, "redis://"):
		b, err := redis.New(url, redis.Options{})
		if err != nil {
			return nil, nil, err
		}
		return b, b.Close, nil
	case strings.HasPrefix(url, "nats://"):
		b, err := nats.New(url, nats.Options{})
		if err != nil {
			return nil, nil, err
		}
		return b, b.Close, nil
	}
	return nil, nil, fmt.Errorf("cluster: unknown broker %q (want redis://, nats:// or memory)", url)
}
