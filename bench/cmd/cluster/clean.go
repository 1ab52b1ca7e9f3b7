package main

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	goredis "github.com/redis/go-redis/v9"
)

// cleanBroker removes what a measurement left on a shared broker server
// under its prefix, and checks that nothing is left.
func cleanBroker(kind, brokerURL, prefix string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u, err := url.Parse(brokerURL)
	if err != nil {
		return err
	}
	switch kind {
	case "redis":
		return cleanRedis(ctx, u, prefix)
	case "nats":
		return cleanNATS(ctx, u, prefix)
	}
	return nil
}

// cleanRedis deletes the keys "<prefix>:*" (the broker's layout, see
// broker/redis's package documentation) and then anything else starting
// with the prefix.
func cleanRedis(ctx context.Context, u *url.URL, prefix string) error {
	opts := &goredis.Options{Addr: u.Host, DialTimeout: 5 * time.Second}
	if db := strings.Trim(u.Path, "/"); db != "" {
		opts.DB, _ = strconv.Atoi(db)
	}
	if u.User != nil {
		opts.Username = u.User.Username()
		opts.Password, _ = u.User.Password()
	}
	rdb := goredis.NewClient(opts)
	defer rdb.Close()
	deleted := 0
	for _, pattern := range []string{prefix + ":*", prefix + "*"} {
		var cursor uint64
		for {
			keys, next, err := rdb.Scan(ctx, cursor, pattern, 1000).Result()
			if err != nil {
				return fmt.Errorf("redis SCAN %s: %w", pattern, err)
			}
			if len(keys) > 0 {
				if err := rdb.Unlink(ctx, keys...).Err(); err != nil {
					return fmt.Errorf("redis UNLINK: %w", err)
				}
				deleted += len(keys)
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	keys, _, err := rdb.Scan(ctx, 0, prefix+"*", 100000).Result()
	if err == nil && len(keys) > 0 {
		return fmt.Errorf("redis: %d keys of prefix %s left after cleaning: %v", len(keys), prefix, keys[:min(5, len(keys))])
	}
	return err
}

// cleanNATS deletes the JetStream streams (key-value buckets are streams
// too) whose name contains the prefix, in any case.
func cleanNATS(ctx context.Context, u *url.URL, prefix string) error {
	nc, err := nats.Connect("nats://"+u.Host, nats.Timeout(5*time.Second), nats.MaxReconnects(0))
	if err != nil {
		return fmt.Errorf("nats connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	match := func(name string) bool { return strings.Contains(strings.ToLower(name), strings.ToLower(prefix)) }
	var names []string
	lister := js.StreamNames(ctx)
	for n := range lister.Name() {
		if match(n) {
			names = append(names, n)
		}
	}
	if err := lister.Err(); err != nil {
		return fmt.Errorf("nats stream names: %w", err)
	}
	for _, n := range names {
		if err := js.DeleteStream(ctx, n); err != nil {
			return fmt.Errorf("nats delete stream %s: %w", n, err)
		}
	}
	lister = js.StreamNames(ctx)
	var left []string
	for n := range lister.Name() {
		if match(n) {
			left = append(left, n)
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("nats: streams of prefix %s left after cleaning: %v", prefix, left)
	}
	return lister.Err()
}
