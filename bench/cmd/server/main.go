// Command server is one benchmark contender: an echo endpoint, a broadcast
// endpoint and a debug endpoint, written the idiomatic way for the library
// named by -lib. The driver (../bench) starts it, reads the READY line it
// prints on stdout, and kills it when done.
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" // /debug/pprof on the debug listener
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// A contender serves echo and broadcast connections and broadcasts a message
// to every broadcast connection on request.
type contender struct {
	// start listens on 127.0.0.1 and returns the URLs of the echo and
	// broadcast endpoints (ws://... or, for the raw TCP ceiling, tcp://...).
	start func() (echoURL, bcastURL string, err error)
	// broadcast sends p as one binary message to every broadcast connection.
	broadcast func(p []byte)
}

var contenders = map[string]func() contender{}

func register(name string, f func() contender) { contenders[name] = f }

// conns counts the broadcast connections whose handler is registered; echo
// counts the echo connections being served.
var conns, echoConns atomic.Int64

func main() {
	lib := flag.String("lib", "", "contender to serve")
	versions := flag.Bool("versions", false, "print the module versions built in and exit")
	flag.Parse()
	if *versions {
		printVersions()
		return
	}
	mk, ok := contenders[*lib]
	if !ok {
		var names []string
		for n := range contenders {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "server: -lib must be one of %v\n", names)
		os.Exit(2)
	}
	c := mk()
	echoURL, bcastURL, err := c.start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
	debugURL, err := startDebug(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
	fmt.Printf("READY pid=%d lib=%s echo=%s bcast=%s debug=%s\n", os.Getpid(), *lib, echoURL, bcastURL, debugURL)

	// Exit on SIGTERM/SIGINT, or when the driver closes our stdin.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		var b [1]byte
		for {
			if _, err := os.Stdin.Read(b[:]); err != nil {
				sig <- syscall.SIGTERM
				return
			}
		}
	}()
	<-sig
	os.Exit(0)
}

func listen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// serveHTTP serves h on a new loopback listener and returns its ws:// base.
func serveHTTP(h http.Handler) (string, error) {
	ln, err := listen()
	if err != nil {
		return "", err
	}
	go (&http.Server{Handler: h}).Serve(ln)
	return "ws://" + ln.Addr().String(), nil
}

// stats is what /stats returns.
type stats struct {
	Mallocs      uint64 `json:"mallocs"`
	Frees        uint64 `json:"frees"`
	TotalAlloc   uint64 `json:"total_alloc"`
	HeapInuse    uint64 `json:"heap_inuse"`
	StackInuse   uint64 `json:"stack_inuse"`
	Sys          uint64 `json:"sys"`
	NumGC        uint32 `json:"num_gc"`
	Goroutines   int    `json:"goroutines"`
	BcastConns   int64  `json:"bcast_conns"`
	EchoConns    int64  `json:"echo_conns"`
	BroadcastDur int64  `json:"broadcast_ns,omitempty"`
}

func readStats() stats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return stats{
		Mallocs: ms.Mallocs, Frees: ms.Frees, TotalAlloc: ms.TotalAlloc,
		HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse, Sys: ms.Sys, NumGC: ms.NumGC,
		Goroutines: runtime.NumGoroutine(), BcastConns: conns.Load(), EchoConns: echoConns.Load(),
	}
}

// BroadcastSize is the payload size of a broadcast message; its first eight
// bytes are the sequence number the driver asked for.
const BroadcastSize = 64

func startDebug(c contender) (string, error) {
	mux := http.DefaultServeMux // carries /debug/pprof
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(readStats())
	})
	mux.HandleFunc("/gc", func(w http.ResponseWriter, r *http.Request) {
		runtime.GC()
		debug.FreeOSMemory()
		json.NewEncoder(w).Encode(readStats())
	})
	mux.HandleFunc("/broadcast", func(w http.ResponseWriter, r *http.Request) {
		seq, err := strconv.ParseUint(r.URL.Query().Get("seq"), 10, 64)
		if err != nil {
			http.Error(w, "seq", http.StatusBadRequest)
			return
		}
		p := make([]byte, BroadcastSize)
		binary.BigEndian.PutUint64(p, seq)
		for i := 8; i < len(p); i++ {
			p[i] = byte('a' + i%26)
		}
		t := time.Now()
		c.broadcast(p)
		s := stats{BroadcastDur: int64(time.Since(t))}
		json.NewEncoder(w).Encode(s)
	})
	ln, err := listen()
	if err != nil {
		return "", err
	}
	go (&http.Server{Handler: mux}).Serve(ln)
	return "http://" + ln.Addr().String(), nil
}

func printVersions() {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	fmt.Printf("go %s\n", bi.GoVersion)
	for _, d := range bi.Deps {
		v := d.Version
		if d.Replace != nil {
			v = "=> " + d.Replace.Path
			if d.Replace.Version != "" {
				v += " " + d.Replace.Version
			}
		}
		fmt.Printf("%s %s\n", d.Path, v)
	}
}
