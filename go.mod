module github.com/wsasync/wsasync

go 1.26.0

require (
	github.com/evanphx/json-patch/v5 v5.9.11
	github.com/gobwas/ws v1.5.0
	github.com/gorilla/websocket v1.5.3
	github.com/vmihailenco/msgpack/v5 v5.4.1
	go.uber.org/goleak v1.3.0
	golang.org/x/sync v0.24.0
)

require (
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
)
