// Command node is one Sente server of a test or benchmark cluster. It prints
// "listening <addr>" first, then one JSON line per presence event, and
// serves:
//
//	/chsk                 the channel socket; the user id is the "u" query parameter
//	POST /push?target=user|client|all&to=…&id=ns/name&from=N&count=K[&stamp=1]
//	                      pushes the integers N … N+K-1, in order (with stamp,
//	                      [i, unix nanoseconds at the push]); 503 when the
//	                      broker refused one (it reached no one, unless the broker stored it);
//	                      several "to" push to each in turn, par workers
//	                      sharing them (each target's pushes stay in order)
//	GET /users            the connected users, as a JSON array
//
// Client events "t/echo" are replied with their data.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/wsasync/wsasync/broker/cluster"
	"github.com/wsasync/wsasync/sente"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	broker := flag.String("broker", "", "broker URL: redis://…, nats://…; empty for memory")
	grace := flag.Duration("grace", 0, "close grace (0: the server's default)")
	window := flag.Duration("window", 0, "send window (0: the server's default)")
	quiet := flag.Bool("quiet", false, "log warnings and errors only")
	flag.Parse()
	level := slog.LevelInfo
	if *quiet {
		level = slog.LevelWarn
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	// NODE_CPUPROFILE=dir profiles the node until it stops, to
	// dir/node-<pid>.pprof: how the benchmarks find where a node's time goes.
	if dir := os.Getenv("NODE_CPUPROFILE"); dir != "" {
		f, err := os.Create(fmt.Sprintf("%s/node-%d.pprof", dir, os.Getpid()))
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			log.Error("cpu profile", "err", err)
			os.Exit(1)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}

	b, closeBroker, err := cluster.Broker(*broker)
	if err != nil {
		log.Error("broker", "err", err)
		os.Exit(1)
	}
	srv := sente.NewServer(sente.Options{
		Broker:     b,
		UserID:     func(r *http.Request, _ string) string { return r.URL.Query().Get("u") },
		Origins:    []string{"*"},
		CloseGrace: *grace,
		SendWindow: *window,
		Logger:     log,
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Error("listen", "err", err)
		os.Exit(1)
	}
	fmt.Printf("listening %s\n", ln.Addr())

	var outMu sync.Mutex
	enc := json.NewEncoder(os.Stdout)
	routed := make(chan struct{})
	go func() {
		defer close(routed)
		for ev := range srv.Events() {
			switch ev.ID {
			case sente.EventUserOpen, sente.EventUserClose, sente.EventClientConnect, sente.EventClientGone:
				outMu.Lock()
				enc.Encode(map[string]string{"ev": ev.ID, "uid": ev.UserID, "client": ev.ClientID})
				outMu.Unlock()
			case "t/echo":
				ev.Reply(ev.Data)
			}
		}
	}()

	mux := http.NewServeMux()
	mux.Handle("/chsk", srv)
	mux.HandleFunc("POST /push", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		from, _ := strconv.Atoi(q.Get("from"))
		count, _ := strconv.Atoi(q.Get("count"))
		id := q.Get("id")
		stamp := q.Get("stamp") == "1"
		target := q.Get("target")
		if target != "user" && target != "client" && target != "all" {
			http.Error(w, "target must be user, client or all", http.StatusBadRequest)
			return
		}
		tos := q["to"]
		if len(tos) == 0 {
			tos = []string{""}
		}
		par, _ := strconv.Atoi(q.Get("par"))
		par = max(1, min(par, len(tos)))
		// Each worker pushes to its share of the targets, in order.
		errs := make(chan error, par)
		var wg sync.WaitGroup
		for k := range par {
			wg.Go(func() {
				for i := from; i < from+count; i++ {
					for j := k; j < len(tos); j += par {
						var data any = i
						if stamp {
							data = []int64{int64(i), time.Now().UnixNano()}
						}
						var err error
						switch target {
						case "user":
							err = srv.Push(tos[j], id, data)
						case "client":
							err = srv.PushClient(tos[j], id, data)
						default:
							err = srv.Broadcast(id, data)
						}
						if err != nil {
							errs <- err
							return
						}
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; errors.Is(err, sente.ErrBroker) {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		} else if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("GET /users", func(w http.ResponseWriter, r *http.Request) {
		users, err := srv.ConnectedUsers(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(users)
	})
	hs := &http.Server{Handler: mux}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		hs.Shutdown(sctx)
	}()
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		log.Error("serve", "err", err)
	}
	<-routed
	if err := closeBroker(); err != nil {
		log.Warn("closing the broker", "err", err)
	}
}
