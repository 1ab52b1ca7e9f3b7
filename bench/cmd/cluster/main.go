// Command cluster measures Sente scaled out over several node processes
// (broker/cluster/cmd/node) that share a Redis or NATS broker, and writes
// RESULTS-cluster.md (and a summary section of RESULTS.md). See
// ../../README.md.
//
//	cd bench && go run ./cmd/cluster            # everything, about 15 minutes
//	go run ./cmd/cluster -parts cross           # the cross-node push benchmark, about 5 minutes
//	go run ./cmd/cluster -parts soak-redis -short
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wsasync/wsasync/bench/internal/measure"
)

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}

var allParts = []string{"cross", "soak-redis", "soak-nats"}

func main() {
	lbChild := flag.Bool("lb-child", false, "internal: run as a load balancer child process")
	lbBackends := flag.String("lb-backends", "", "internal: the load balancer's backends, comma-separated")

	parts := flag.String("parts", strings.Join(allParts, ","), "what to run: cross (push throughput over nodes), soak-redis, soak-nats")
	out := flag.String("out", "RESULTS-cluster.md", "report to write; the raw figures go to results-cluster.json beside it")
	summary := flag.String("summary", "RESULTS.md", "file whose cluster section (between markers) gets the summary and a link to -out; empty: none")
	from := flag.String("from", "", "re-render the reports from a results-cluster.json instead of running")
	nodeBin := flag.String("node", "", "prebuilt node binary (default: go build github.com/wsasync/wsasync/broker/cluster/cmd/node)")

	var cc crossConfig
	flag.IntVar(&cc.Rounds, "rounds", 5, "cross: rounds; each configuration runs once per round, interleaved")
	flag.IntVar(&cc.Users, "users", 1000, "cross: users, one client each, spread evenly over the nodes")
	flag.IntVar(&cc.K, "k", 100, "cross: pushes each node makes to each user per push phase")
	flag.IntVar(&cc.Par, "par", 1000, "cross: workers per /push call (the node API's par; 1000: one per user)")
	configs := flag.String("configs", "memory,redis,nats", "cross: configurations (memory = one node, in-memory broker)")
	flag.StringVar(&cc.Redis, "redis", "redis://127.0.0.1:6379", "cross: the shared Redis (a unique prefix is added per measurement)")
	flag.StringVar(&cc.NATS, "nats", "nats://127.0.0.1:4222", "cross: the shared NATS with JetStream (a unique prefix is added per measurement)")
	flag.DurationVar(&cc.QuietWait, "quiet-wait", 5*time.Second, "cross: before each measurement, wait up to this long for the machine to be quiet (0: don't)")
	flag.Float64Var(&cc.MaxForeign, "max-foreign", 0.3, "cross: repeat a measurement during which other processes used more than this many cores")
	flag.IntVar(&cc.Retries, "retries", 1, "cross: repeats of a disturbed or failed measurement (the least disturbed is kept)")
	flag.DurationVar(&cc.MinWindow, "min-window", 3*time.Second, "cross: repeat the push phase of a measurement (the integers going on) until it has lasted this long in all")
	flag.DurationVar(&cc.Budget, "budget", 5*time.Minute, "cross: quiet waits and retries stop when they would take the benchmark past this")

	var sc soakConfig
	flag.IntVar(&sc.Clients, "soak-clients", 10000, "soak: clients (users u0…, one client each)")
	flag.DurationVar(&sc.Duration, "soak-duration", 3*time.Minute, "soak: how long pushes go on")
	short := flag.Bool("short", false, "soak: 45 s of pushes (and a 3 s broker outage)")
	flag.IntVar(&sc.Rate, "soak-rate", 1500, "soak: pushes per second, over all pushers")
	flag.IntVar(&sc.Batch, "soak-batch", 10, "soak: users per /push call (one push each): an answered call acknowledges all of them")
	flag.DurationVar(&sc.Outage, "outage", 5*time.Second, "soak: how long the broker server stays down")
	flag.IntVar(&sc.LBs, "lbs", 0, "soak: load balancer processes (0: enough to stay under RLIMIT_NOFILE)")
	flag.DurationVar(&sc.MinBackoff, "min-backoff", 250*time.Millisecond, "soak: the clients' MinBackoff")
	flag.DurationVar(&sc.MaxBackoff, "max-backoff", 5*time.Second, "soak: the clients' MaxBackoff")
	flag.Parse()

	if *lbChild {
		runLB(splitList(*lbBackends))
		return
	}

	outDir := filepath.Dir(*out)
	check(os.MkdirAll(outDir, 0o755))
	jsonPath := filepath.Join(outDir, "results-cluster.json")
	var res report
	if b, err := os.ReadFile(jsonPath); err == nil {
		if err := json.Unmarshal(b, &res); err != nil {
			logf("warning: %s unreadable (%v): starting afresh", jsonPath, err)
			res = report{}
		}
	}
	if *from != "" {
		b, err := os.ReadFile(*from)
		check(err)
		res = report{}
		check(json.Unmarshal(b, &res))
		check(writeReports(&res, *out, *summary))
		return
	}

	// Every child dies with this command: on return, on a panic of main
	// (deferred), on SIGINT/SIGTERM (the context, then killAll), and on
	// anything else through the children's Pdeathsig.
	defer exitCleanup()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		logf("%v: stopping (again to stop at once)", s)
		cancel()
		select {
		case <-sigs:
		case <-time.After(90 * time.Second):
		}
		logf("killing the child processes")
		exit(130)
	}()

	limit := raiseNoFile()
	want := splitList(*parts)
	for _, p := range want {
		if !slices.Contains(allParts, p) {
			check(fmt.Errorf("unknown part %q (want %s)", p, strings.Join(allParts, ", ")))
		}
	}
	if *short {
		sc.Duration = 45 * time.Second
		sc.Outage = 3 * time.Second
	}
	if sc.LBs <= 0 {
		// Each balancer holds two descriptors per client; keep each under
		// 80 % of the limit (10,000 clients, limit 20,000: 2 balancers).
		sc.LBs = max(1, (2*sc.Clients+int(0.8*float64(limit))-1)/int(0.8*float64(limit)))
	}
	if need := sc.Clients + 1000; slices.Contains(want, "soak-redis") || slices.Contains(want, "soak-nats") {
		if uint64(need) > limit {
			check(fmt.Errorf("RLIMIT_NOFILE is %d here: %d clients need about %d descriptors in this process", limit, sc.Clients, need))
		}
	}
	cc.Configs = splitList(*configs)

	bin := *nodeBin
	if bin == "" {
		tmp, err := os.MkdirTemp("", "cluster-bench")
		check(err)
		atExit(func() { os.RemoveAll(tmp) })
		bin = filepath.Join(tmp, "node")
		logf("building the node (without -race)")
		cmd := exec.Command("go", "build", "-o", bin, "github.com/wsasync/wsasync/broker/cluster/cmd/node")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			check(fmt.Errorf("building broker/cluster/cmd/node: %w", err))
		}
	}
	runID := fmt.Sprintf("cb%08x", uint32(time.Now().UnixNano()/1e3))
	logf("run %s: RLIMIT_NOFILE %d; parts %s", runID, limit, strings.Join(want, ", "))
	command := strings.TrimSpace("go run ./cmd/cluster " + strings.Join(os.Args[1:], " "))

	var (
		failed []string
		wrote  bool
	)
	for _, p := range want {
		if ctx.Err() != nil {
			break
		}
		m := collectMeta(command)
		start := time.Now()
		saved := report{Cross: res.Cross, Soak: maps.Clone(res.Soak)}
		switch p {
		case "cross":
			r := runCross(ctx, bin, cc, runID)
			m.Elapsed = time.Since(start).Round(time.Second).String()
			m.LoadEnd = measure.LoadAvg()
			res.Cross = &crossPart{Meta: m, Result: r}
			failed = append(failed, r.Errors...)
		default:
			kind := strings.TrimPrefix(p, "soak-")
			c := sc
			c.Broker = kind
			r, err := runSoak(ctx, bin, c, runID+kind[:1])
			m.Elapsed = time.Since(start).Round(time.Second).String()
			m.LoadEnd = measure.LoadAvg()
			if err != nil {
				logf("soak %s FAILED: %v", kind, err)
				r.Errors = append(r.Errors, err.Error())
			}
			failed = append(failed, r.Errors...)
			if res.Soak == nil {
				res.Soak = map[string]*soakPart{}
			}
			res.Soak[kind] = &soakPart{Meta: m, Result: r}
		}
		if ctx.Err() != nil {
			logf("%s interrupted: its previous figures are kept", p)
			res = saved
			break
		}
		// Save after each part, so that a run interrupted later keeps
		// what it measured.
		b, err := json.MarshalIndent(&res, "", " ")
		check(err)
		check(os.WriteFile(jsonPath, b, 0o644))
		check(writeReports(&res, *out, *summary))
		wrote = true
	}
	if wrote {
		logf("wrote %s, %s and the cluster section of %s", *out, jsonPath, *summary)
	}
	if ctx.Err() != nil {
		exit(130)
	}
	if len(failed) > 0 {
		logf("%d problems:\n  %s", len(failed), strings.Join(failed, "\n  "))
		exit(1)
	}
}

var (
	cleanupMu sync.Mutex
	cleanups  []func()
)

// atExit registers f to run when the command ends (after the children are
// killed), however it ends short of a crash.
func atExit(f func()) {
	cleanupMu.Lock()
	cleanups = append(cleanups, f)
	cleanupMu.Unlock()
}

// exitCleanup kills every child and runs the atExit functions, once.
func exitCleanup() {
	killAll()
	cleanupMu.Lock()
	fs := cleanups
	cleanups = nil
	cleanupMu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

func exit(code int) {
	exitCleanup()
	os.Exit(code)
}

func check(err error) {
	if err != nil {
		logf("error: %v", err)
		exit(1)
	}
}

type meta struct {
	Date      string `json:"date"`
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	Memory    string `json:"memory"`
	Kernel    string `json:"kernel"`
	Go        string `json:"go"`
	Redis     string `json:"redis"`
	NATS      string `json:"nats"`
	Commit    string `json:"commit"`
	Command   string `json:"command"`
	Elapsed   string `json:"elapsed"`
	LoadStart string `json:"load_start"`
	LoadEnd   string `json:"load_end"`
}

func collectMeta(command string) meta {
	m := meta{Date: time.Now().UTC().Format("2006-01-02 15:04 MST"), Go: runtime.Version(),
		Command: command, LoadStart: measure.LoadAvg()}
	m.CPU, m.Cores, m.Memory, m.Kernel = measure.Host()
	if b, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		m.Go = strings.TrimSpace(string(b)) // the toolchain that builds the node
	}
	if b, err := exec.Command("redis-server", "--version").Output(); err == nil {
		m.Redis = strings.TrimSpace(string(b))
		if i := strings.Index(m.Redis, " sha="); i > 0 {
			m.Redis = m.Redis[:i]
		}
	}
	if b, err := exec.Command("nats-server", "--version").Output(); err == nil {
		m.NATS = strings.TrimSpace(string(b))
	}
	if b, err := exec.Command("git", "-C", "..", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(b))
		st, _ := exec.Command("git", "-C", "..", "status", "--porcelain", "--", ".", ":(exclude)bench").Output()
		n := 0
		for _, l := range strings.Split(strings.TrimRight(string(st), "\n"), "\n") {
			if strings.HasSuffix(strings.TrimSpace(l), ".go") || strings.HasSuffix(l, "/") {
				n++
			}
		}
		if n > 0 {
			m.Commit += fmt.Sprintf(" + uncommitted changes (%d paths outside bench/)", n)
		}
	}
	return m
}
