module github.com/wsasync/wsasync/bench

go 1.26.0

replace (
	github.com/wsasync/wsasync => ../
	github.com/wsasync/wsasync/broker/cluster => ../broker/cluster
	github.com/wsasync/wsasync/broker/nats => ../broker/nats
	github.com/wsasync/wsasync/broker/redis => ../broker/redis
)

require (
	github.com/coder/websocket v1.8.15
	github.com/gobwas/ws v1.5.0
	github.com/gorilla/websocket v1.5.3
	github.com/lxzan/gws v1.8.9
	github.com/nats-io/nats.go v1.55.0
	github.com/redis/go-redis/v9 v9.23.0
	github.com/wsasync/wsasync v0.0.0-00010101000000-000000000000
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/dolthub/maphash v0.1.0 // indirect
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/klauspost/compress v1.20.0 // indirect
	github.com/nats-io/nkeys v0.4.16 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/wsasync/wsasync/broker/cluster v0.0.0-00010101000000-000000000000 // indirect
	github.com/wsasync/wsasync/broker/nats v0.0.0-00010101000000-000000000000 // indirect
	github.com/wsasync/wsasync/broker/redis v0.0.0-00010101000000-000000000000 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/crypto v0.57.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
)

tool github.com/wsasync/wsasync/broker/cluster/cmd/node
