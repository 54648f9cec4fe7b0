// Command loadtest is `make loadtest`: it starts one redis-server on a free
// loopback port in a temporary folder, the demo shop (cmd/demo, built from the
// repository root, -store redis), the equivalent scs server (cmd/scsdemo) and
// the floor server (cmd/floorserver: bare net/http + go-redis, one GET per
// read, GET + SET per add) on it, creates sessions holding a 10-item basket in
// each, and drives all three with wrk on the same requests, interleaved:
//
//   - read: GET /api/basket
//   - add: POST /api/basket/items of an 11th product, alternating per session
//     with DELETE /api/basket/items/{sku}, so baskets stay at 10 or 11 lines.
//
// Each request carries one of the sessions' cookies (round robin over -sessions
// sessions, each wrk thread on its own share, so a session rarely sees two
// requests at once). It reports requests per second side by side and the Redis
// commands per request (INFO commandstats deltas over the wrk run; commands run
// inside Lua scripts are counted too), writes bench/results/loadtest.json and
// rewrites the load-test section of docs/performance.md.
//
//	go run ./cmd/loadtest -duration 10s -connections 16 -threads 2 -rounds 3
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fxsession/fxsession/bench/internal/perfdoc"
	"github.com/fxsession/fxsession/internal/testserver"
)

type options struct {
	duration    time.Duration
	warmup      time.Duration
	connections int
	threads     int
	rounds      int
	sessions    int
	root        string
	out         string
	results     string
	only        string
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of one wrk run")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "wrk warm-up before each measured run")
	flag.IntVar(&o.connections, "connections", 16, "wrk connections")
	flag.IntVar(&o.threads, "threads", 2, "wrk threads")
	flag.IntVar(&o.rounds, "rounds", 3, "measured runs per system and route (the median is reported)")
	flag.IntVar(&o.sessions, "sessions", 64, "sessions per system")
	flag.StringVar(&o.root, "root", "..", "the repository root (where cmd/demo lives)")
	flag.StringVar(&o.out, "out", "../docs/performance.md", "the document whose load-test section is rewritten")
	flag.StringVar(&o.results, "results", "results", "folder for loadtest.json and the raw wrk outputs")
	flag.StringVar(&o.only, "only", "", "comma-separated systems to run (fxsession, scs, scs-idle, floor), for profiling; such a run writes its results but not the document")
	flag.Parse()
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

// system is one server under test.
type system struct {
	name    string
	proc    *proc
	base    string
	cookie  string // the session cookie's name
	cookies []string
}

func run(ctx context.Context, o options) error {
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk is not installed: apt-get install wrk (make loadtest does it when run as root)")
	}
	if o.sessions < 2*o.threads {
		return fmt.Errorf("-sessions %d: want at least 2 per wrk thread", o.sessions)
	}
	tmp, err := os.MkdirTemp("", "fxsession-loadtest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.MkdirAll(o.results, 0o755); err != nil {
		return err
	}

	logf("building the demo, scsdemo and floorserver")
	demoBin, scsBin, floorBin := filepath.Join(tmp, "demo"), filepath.Join(tmp, "scsdemo"), filepath.Join(tmp, "floorserver")
	if err := command(o.root, "go", "build", "-o", demoBin, "./cmd/demo"); err != nil {
		return err
	}
	if err := command(".", "go", "build", "-o", scsBin, "./cmd/scsdemo"); err != nil {
		return err
	}
	if err := command(".", "go", "build", "-o", floorBin, "./cmd/floorserver"); err != nil {
		return err
	}

	logf("starting redis-server")
	srv, stopRedis, err := testserver.StartRedisMain()
	if err != nil {
		return err
	}
	defer stopRedis()
	admin := redis.NewClient(srv.Options())
	defer admin.Close()

	catalog := filepath.Join(tmp, "catalog.db")
	fx := &system{name: "fxsession", cookie: "fxsession"}
	if fx.base, fx.proc, err = start(ctx, tmp, "demo", demoBin, "serve", "-addr", "127.0.0.1:0", "-store", "redis",
		"-redis-url", srv.URL(), "-catalog", catalog, "-namespace", "loadtest"); err != nil {
		return err
	}
	defer fx.proc.stop()
	sc := &system{name: "scs", cookie: "session"}
	if sc.base, sc.proc, err = start(ctx, tmp, "scsdemo", scsBin, "-addr", "127.0.0.1:0",
		"-redis-url", srv.URL(), "-catalog", catalog); err != nil {
		return err
	}
	defer sc.proc.stop()
	// scs-idle is scs with the demo's expiry policy: sessions end after an hour
	// of inactivity (scs.SessionManager.IdleTimeout), as fxsession's do by
	// default; scs then writes the session back on every request.
	si := &system{name: "scs-idle", cookie: "session"}
	if si.base, si.proc, err = start(ctx, tmp, "scsdemo-idle", scsBin, "-addr", "127.0.0.1:0",
		"-redis-url", srv.URL(), "-catalog", catalog, "-idle-timeout", "1h"); err != nil {
		return err
	}
	defer si.proc.stop()
	fl := &system{name: "floor", cookie: "floor"}
	if fl.base, fl.proc, err = start(ctx, tmp, "floorserver", floorBin, "-addr", "127.0.0.1:0",
		"-redis-url", srv.URL(), "-catalog", catalog); err != nil {
		return err
	}
	defer fl.proc.stop()
	systems := []*system{fx, sc, si, fl}
	if o.only != "" {
		if systems, err = pick(systems, o.only); err != nil {
			return err
		}
	}

	skus, err := products(fx.base)
	if err != nil {
		return err
	}
	if len(skus) < 11 {
		return fmt.Errorf("the catalog has %d products, want 11", len(skus))
	}
	for _, s := range systems {
		logf("creating %d sessions with a 10-item basket on %s", o.sessions, s.name)
		for range o.sessions {
			c, err := newSession(s, skus[:10])
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			s.cookies = append(s.cookies, c)
		}
		if err := os.WriteFile(filepath.Join(tmp, s.name+".cookies"), []byte(strings.Join(s.cookies, "\n")+"\n"), 0o644); err != nil {
			return err
		}
	}
	script := filepath.Join(tmp, "session.lua")
	if err := os.WriteFile(script, []byte(luaScript), 0o644); err != nil {
		return err
	}

	loadStart := loadAvg()
	cpuStart := machineCPU()
	library := libraryState(o.root)
	res := &perfdoc.LoadTest{
		Date:        time.Now().UTC().Format("2006-01-02 15:04 MST"),
		Duration:    o.duration.String(),
		Connections: o.connections,
		Threads:     o.threads,
		RPS:         map[string]map[string]float64{},
		Commands:    map[string]map[string]float64{},
		Errors:      map[string]map[string]int64{},
		CPU:         map[string]map[string]map[string]float64{},
	}
	breakdown := map[string]map[string]map[string]float64{} // route -> system -> command -> per request
	var raw bytes.Buffer
	routes := []struct{ name, mode string }{{"read", "read"}, {"add", "add"}}
	for _, rt := range routes {
		res.RPS[rt.name], res.Commands[rt.name], res.Errors[rt.name] = map[string]float64{}, map[string]float64{}, map[string]int64{}
		breakdown[rt.name] = map[string]map[string]float64{}
		res.CPU[rt.name] = map[string]map[string]float64{}
		rps := map[string][]float64{}
		cmds := map[string][]float64{}
		cpus := map[string]map[string][]float64{} // system -> process -> µs per request of each run
		for round := 1; round <= o.rounds; round++ {
			for _, s := range systems {
				args := func(d time.Duration) []string {
					return []string{"-t", strconv.Itoa(o.threads), "-c", strconv.Itoa(o.connections), "-d", d.String(),
						"-s", script, s.base, "--", filepath.Join(tmp, s.name+".cookies"), rt.mode, skus[10], strconv.Itoa(o.threads)}
				}
				if o.warmup > 0 {
					if _, err := output("wrk", args(o.warmup)...); err != nil {
						return err
					}
				}
				before, err := commandStats(ctx, admin)
				if err != nil {
					return err
				}
				cpuBefore, err := cpuTimes(ctx, admin, s.proc)
				if err != nil {
					return err
				}
				out, wrkCPU, err := outputCPU("wrk", args(o.duration)...)
				if err != nil {
					return err
				}
				cpuAfter, err := cpuTimes(ctx, admin, s.proc)
				if err != nil {
					return err
				}
				after, err := commandStats(ctx, admin)
				if err != nil {
					return err
				}
				fmt.Fprintf(&raw, "### %s %s round %d\n%s\n", rt.name, s.name, round, out)
				w, err := parseWrk(out)
				if err != nil {
					return fmt.Errorf("%s %s: %w\n%s", rt.name, s.name, err, out)
				}
				res.Errors[rt.name][s.name] += w.failed
				rps[s.name] = append(rps[s.name], w.rps)
				total := 0.0
				per := map[string]float64{}
				for c, n := range after {
					if d := n - before[c]; d > 0 && !notRequests[c] {
						per[c] = float64(d) / float64(w.requests)
						total += per[c]
					}
				}
				cmds[s.name] = append(cmds[s.name], total)
				if cpus[s.name] == nil {
					cpus[s.name] = map[string][]float64{}
				}
				perReq := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(w.requests) }
				cpus[s.name]["server"] = append(cpus[s.name]["server"], perReq(cpuAfter.server-cpuBefore.server))
				cpus[s.name]["redis"] = append(cpus[s.name]["redis"], perReq(cpuAfter.redis-cpuBefore.redis))
				cpus[s.name]["wrk"] = append(cpus[s.name]["wrk"], perReq(wrkCPU))
				breakdown[rt.name][s.name] = per
				logf("%s %s round %d: %.0f req/s, %.2f Redis commands/request, %d failed", rt.name, s.name, round, w.rps, total, w.failed)
			}
		}
		for _, s := range systems {
			res.RPS[rt.name][s.name] = median(rps[s.name])
			res.Commands[rt.name][s.name] = median(cmds[s.name])
			res.CPU[rt.name][s.name] = map[string]float64{}
			for p, xs := range cpus[s.name] {
				res.CPU[rt.name][s.name][p] = median(xs)
			}
		}
	}
	res.Library = library
	res.Load = fmt.Sprintf("%s at the start, %s at the end (1, 5 and 15 minutes)", loadStart, loadAvg())
	if steal, ok := stealPercent(cpuStart, machineCPU()); ok {
		res.Load += fmt.Sprintf("; steal (CPU time the host gave to others) during the run: %.1f%%", steal)
	}
	if err := os.WriteFile(filepath.Join(o.results, "wrk.txt"), raw.Bytes(), 0o644); err != nil {
		return err
	}
	js, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(filepath.Join(o.results, "loadtest.json"), js, 0o644); err != nil {
		return err
	}
	if o.only != "" {
		logf("wrote %s (a run of some systems leaves %s alone)", filepath.Join(o.results, "loadtest.json"), o.out)
		return nil
	}
	if err := perfdoc.Splice(o.out, "loadtest", section(res, breakdown, o)); err != nil {
		return err
	}
	logf("wrote %s and %s", filepath.Join(o.results, "loadtest.json"), o.out)
	return nil
}

// pick returns the systems named in the comma-separated list only, in their
// usual order.
func pick(all []*system, only string) ([]*system, error) {
	want := map[string]bool{}
	for _, n := range strings.Split(only, ",") {
		want[strings.TrimSpace(n)] = true
	}
	var out []*system
	for _, s := range all {
		if want[s.name] {
			out = append(out, s)
			delete(want, s.name)
		}
	}
	if len(want) > 0 || len(out) == 0 {
		return nil, fmt.Errorf("-only %q: systems are fxsession, scs, scs-idle and floor", only)
	}
	return out, nil
}

// notRequests are the commands no request sends: the stats client's INFO and
// the handshake of a new connection.
var notRequests = map[string]bool{"info": true, "hello": true, "client|setinfo": true, "client": true}

// luaScript makes wrk send each request with the next session's cookie; every
// thread has its own share of the sessions. Mode "add" alternates, per
// session, an add of the product and its removal.
const luaScript = `
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local cookies = {}
  for line in io.lines(args[1]) do
    if line ~= "" then table.insert(cookies, line) end
  end
  local n = tonumber(args[4])
  local share = math.floor(#cookies / n)
  mine = {}
  for i = 1, share do
    mine[i] = cookies[id * share + i]
  end
  if share == 0 or mine[share] == nil then
    error("thread " .. id .. " has no sessions")
  end
  mode = args[2]
  sku = args[3]
  k = 0
end

function request()
  local i = (k % #mine) + 1
  local turn = math.floor(k / #mine)
  k = k + 1
  local h = { ["Cookie"] = mine[i] }
  if mode == "read" then
    return wrk.format("GET", "/api/basket", h, nil)
  end
  if turn % 2 == 0 then
    h["Content-Type"] = "application/json"
    return wrk.format("POST", "/api/basket/items", h, '{"sku":"' .. sku .. '","qty":1}')
  end
  return wrk.format("DELETE", "/api/basket/items/" .. sku, h, nil)
end
`

// loadAvg is the first three fields of /proc/loadavg ("?" where there is none).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

// machineCPU is the first line of /proc/stat: the machine's CPU time by kind.
func machineCPU() []int64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return nil
	}
	out := make([]int64, 0, len(f)-1)
	for _, s := range f[1:] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil
		}
		out = append(out, n)
	}
	return out
}

// stealPercent is the share of the machine's CPU time between two readings of
// machineCPU that was steal (the eighth field).
func stealPercent(a, b []int64) (float64, bool) {
	if len(a) < 8 || len(a) != len(b) {
		return 0, false
	}
	var total int64
	for i := range a {
		total += b[i] - a[i]
	}
	if total <= 0 {
		return 0, false
	}
	return 100 * float64(b[7]-a[7]) / float64(total), true
}

// libraryState names the commit of the repository at root the demo was built
// from, and whether files outside bench/ differed from it ("" outside git).
func libraryState(root string) string {
	rev, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	s := "commit " + strings.TrimSpace(string(rev))
	if exec.Command("git", "-C", root, "diff", "--quiet", "HEAD", "--", ".", ":(exclude)bench").Run() != nil {
		s += ", with uncommitted changes outside bench/"
	}
	return s
}

// ---- processes ----

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadtest: "+format+"\n", args...)
}

func command(dir, name string, args ...string) error {
	c := exec.Command(name, args...)
	c.Dir, c.Stdout, c.Stderr = dir, os.Stderr, os.Stderr
	if err := c.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// output runs a command and returns its standard output.
func output(name string, args ...string) (string, error) {
	out, _, err := outputCPU(name, args...)
	return out, err
}

// outputCPU is output that also returns the CPU time (user and system) the
// command used.
func outputCPU(name string, args ...string) (string, time.Duration, error) {
	var out, errb bytes.Buffer
	c := exec.Command(name, args...)
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Run(); err != nil {
		return "", 0, fmt.Errorf("%s %s: %w\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), c.ProcessState.UserTime() + c.ProcessState.SystemTime(), nil
}

// cpu is the CPU time used so far by a server under test and by redis-server.
type cpu struct{ server, redis time.Duration }

// cpuTimes reads the server's CPU time from /proc and redis-server's from INFO
// cpu.
func cpuTimes(ctx context.Context, admin *redis.Client, p *proc) (cpu, error) {
	var c cpu
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return c, err
	}
	// The fields after the command name (which may hold spaces) in brackets:
	// utime and stime are the 14th and 15th fields of the line, in clock ticks.
	i := bytes.LastIndexByte(stat, ')')
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return c, fmt.Errorf("/proc/%d/stat: %q", p.cmd.Process.Pid, stat)
	}
	for _, s := range f[11:13] {
		ticks, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return c, fmt.Errorf("/proc/%d/stat: %w", p.cmd.Process.Pid, err)
		}
		c.server += time.Duration(ticks) * time.Second / clockTicks
	}
	info, err := admin.Info(ctx, "cpu").Result()
	if err != nil {
		return c, fmt.Errorf("INFO cpu: %w", err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		name, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (name == "used_cpu_sys" || name == "used_cpu_user") {
			secs, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return c, fmt.Errorf("INFO cpu: %q: %w", line, err)
			}
			c.redis += time.Duration(secs * float64(time.Second))
		}
	}
	return c, nil
}

// clockTicks is Linux's USER_HZ, the unit of /proc/<pid>/stat's times.
const clockTicks = 100

// start runs a server on a free port (args hold "127.0.0.1:0", replaced) and
// waits for its /healthz.
func start(ctx context.Context, dir, name, bin string, args ...string) (string, *proc, error) {
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	args = slices.Clone(args)
	for i, a := range args {
		if a == "127.0.0.1:0" {
			args[i] = addr
		}
	}
	logPath := filepath.Join(dir, name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return "", nil, err
	}
	c := exec.CommandContext(ctx, bin, args...)
	c.Dir, c.Stdout, c.Stderr = dir, lf, lf
	if err := c.Start(); err != nil {
		lf.Close()
		return "", nil, err
	}
	p := &proc{cmd: c, done: make(chan struct{})}
	go func() { _ = c.Wait(); lf.Close(); close(p.done) }()
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base, p, nil
			}
		}
		if time.Now().After(deadline) {
			p.stop()
			log, _ := os.ReadFile(logPath)
			return "", nil, fmt.Errorf("%s did not answer /healthz within 30 s:\n%s", name, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// proc is a started server.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it exited
}

// stop interrupts the server and kills it if it has not exited after 10 s.
func (p *proc) stop() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// ---- HTTP set-up ----

func products(base string) ([]string, error) {
	resp, err := http.Get(base + "/api/products")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var ps []struct {
		SKU string `json:"sku"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ps); err != nil {
		return nil, fmt.Errorf("GET /api/products: %w", err)
	}
	var out []string
	for _, p := range ps {
		out = append(out, p.SKU)
	}
	return out, nil
}

// newSession adds the products to a new session's basket and returns its
// "name=value" cookie.
func newSession(s *system, skus []string) (string, error) {
	cookie := ""
	for _, sku := range skus {
		req, _ := http.NewRequest(http.MethodPost, s.base+"/api/basket/items", strings.NewReader(`{"sku":"`+sku+`","qty":1}`))
		req.Header.Set("Content-Type", "application/json")
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("POST /api/basket/items: %d %s", resp.StatusCode, body)
		}
		for _, c := range resp.Cookies() {
			if c.Name == s.cookie && c.Value != "" {
				cookie = c.Name + "=" + c.Value
			}
		}
		if cookie == "" {
			return "", fmt.Errorf("POST /api/basket/items sent no %s cookie", s.cookie)
		}
	}
	var b struct {
		Items []json.RawMessage `json:"items"`
	}
	req, _ := http.NewRequest(http.MethodGet, s.base+"/api/basket", nil)
	req.Header.Set("Cookie", cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil || len(b.Items) != len(skus) {
		return "", fmt.Errorf("GET /api/basket: %d items, want %d (%v)", len(b.Items), len(skus), err)
	}
	return cookie, nil
}

// ---- measurements ----

type wrkResult struct {
	rps      float64
	requests int64
	failed   int64
}

var (
	reRPS      = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reRequests = regexp.MustCompile(`(\d+) requests in`)
	reNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	reSocket   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

func parseWrk(out string) (wrkResult, error) {
	var w wrkResult
	m := reRPS.FindStringSubmatch(out)
	n := reRequests.FindStringSubmatch(out)
	if m == nil || n == nil {
		return w, errors.New("cannot read wrk's output")
	}
	w.rps, _ = strconv.ParseFloat(m[1], 64)
	w.requests, _ = strconv.ParseInt(n[1], 10, 64)
	if m := reNon2xx.FindStringSubmatch(out); m != nil {
		w.failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reSocket.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			v, _ := strconv.ParseInt(s, 10, 64)
			w.failed += v
		}
	}
	if w.requests == 0 {
		return w, errors.New("wrk completed no request")
	}
	return w, nil
}

// commandStats returns the calls per command from INFO commandstats.
func commandStats(ctx context.Context, c *redis.Client) (map[string]int64, error) {
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("INFO commandstats: %w", err)
	}
	out := map[string]int64{}
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for kv := range strings.SplitSeq(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("INFO commandstats: %q: %w", line, err)
				}
				out[strings.TrimPrefix(name, "cmdstat_")] = n
			}
		}
	}
	return out, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// ---- the document ----

// loadSystems are the systems of the load test, in the report's order.
var loadSystems = []string{"fxsession", "scs", "scs-idle", "floor"}

func section(res *perfdoc.LoadTest, breakdown map[string]map[string]map[string]float64, o options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Load test\n\n")
	fmt.Fprintf(&b, "Generated by `make loadtest` (bench/cmd/loadtest) on %s. ", res.Date)
	fmt.Fprintf(&b, "The demo shop (cmd/demo, `-store redis`: the basket is session-scoped, its products are entities stored by reference and fetched on load through the catalog's entity cache, SQLite behind it, 30 s TTL), ")
	fmt.Fprintf(&b, "the same JSON API written with scs and goredisstore (bench/cmd/scsdemo: the basket is a gob value in the session, products copied whole; two configurations, below) ")
	fmt.Fprintf(&b, "and a floor server (bench/cmd/floorserver: bare net/http + go-redis, one GET per read, GET + SET per add or removal, the basket a JSON document with copies of its products, the catalog in memory, no session library) ")
	fmt.Fprintf(&b, "run on one redis-server on loopback, driven by wrk (%d threads, %d connections, %s per run after a %s warm-up, median of %d runs, systems interleaved). ",
		res.Threads, res.Connections, res.Duration, o.warmup, o.rounds)
	fmt.Fprintf(&b, "Each request carries the cookie of one of %d sessions per system holding a 10-item basket. ", o.sessions)
	fmt.Fprintf(&b, "`read` is GET /api/basket; `add` alternates, per session, POST /api/basket/items of an 11th product and DELETE /api/basket/items/{sku}. ")
	fmt.Fprintf(&b, "wrk, the servers and Redis share the machine's %d cores with other work, so the figures are noisy; read the ratios.\n\n", runtime.NumCPU())
	if res.Library != "" {
		fmt.Fprintf(&b, "Built from %s. ", res.Library)
	}
	if res.Load != "" {
		fmt.Fprintf(&b, "Load average: %s.", res.Load)
	}
	if res.Library != "" || res.Load != "" {
		fmt.Fprintf(&b, "\n\n")
	}
	fmt.Fprintf(&b, "Two scs configurations run: `scs` as scs comes (sessions live 24 h, however idle; nothing is written on a read) and `scs-idle` with the demo's expiry policy, ")
	fmt.Fprintf(&b, "sessions ending after an hour of inactivity (`IdleTimeout: time.Hour`, what fxsession does by default): scs then writes every session back on every request to move its expiry, ")
	fmt.Fprintf(&b, "where fxsession writes the last activity only once the update threshold passed. The floor server has neither. ")
	fmt.Fprintf(&b, "`floor ÷ scs` shows how far above scs a server with no session library gets on this machine: a session library that reads its store once per request cannot pass it.\n\n")
	fmt.Fprintf(&b, "| route | system | req/s | fxsession ÷ system | target | verdict | Redis cmds/req | failed requests |\n")
	fmt.Fprintf(&b, "|---|---|--:|--:|---|---|--:|--:|\n")
	targets := map[string]float64{"scs": 1.5, "scs-idle": 1.5, "floor": 0.75}
	for _, route := range []string{"read", "add"} {
		f := res.RPS[route]["fxsession"]
		for _, sys := range loadSystems {
			p := res.RPS[route][sys]
			ratio, target, v := "–", "–", "–"
			if sys != "fxsession" && p > 0 {
				ratio = fmt.Sprintf("%.2f", f/p)
				target = fmt.Sprintf("≥ %.2g", targets[sys])
				v = "**missed**"
				if f/p >= targets[sys] {
					v = "**met**"
				}
			}
			fmt.Fprintf(&b, "| %s | %s | %.0f | %s | %s | %s | %.2f | %d |\n", route, sys, p, ratio, target, v, res.Commands[route][sys], res.Errors[route][sys])
		}
		if sc, fl := res.RPS[route]["scs"], res.RPS[route]["floor"]; sc > 0 {
			fmt.Fprintf(&b, "| %s | floor ÷ scs | | %.2f | | | | |\n", route, fl/sc)
		}
	}
	if len(res.CPU) > 0 {
		fmt.Fprintf(&b, "\nCPU time per request (µs, median of the runs): the server under test (/proc/<pid>/stat), redis-server (INFO cpu) and wrk (its rusage). ")
		fmt.Fprintf(&b, "Requests per second on this machine are bounded by their sum over its %d cores, so the ratio of the sums is the throughput ratio the CPU work implies; ", runtime.NumCPU())
		fmt.Fprintf(&b, "unlike requests per second it does not move when the machine's host takes CPU time away (steal), which a shared machine does in bursts.\n\n")
		fmt.Fprintf(&b, "| route | system | server | Redis | wrk | sum | fxsession ÷ system by CPU |\n|---|---|--:|--:|--:|--:|--:|\n")
		sum := func(c map[string]float64) float64 { return c["server"] + c["redis"] + c["wrk"] }
		for _, route := range []string{"read", "add"} {
			fx := sum(res.CPU[route]["fxsession"])
			for _, sys := range loadSystems {
				c := res.CPU[route][sys]
				ratio := "–"
				if sys != "fxsession" && fx > 0 {
					ratio = fmt.Sprintf("%.2f", sum(c)/fx)
				}
				fmt.Fprintf(&b, "| %s | %s | %.1f | %.1f | %.1f | %.1f | %s |\n", route, sys, c["server"], c["redis"], c["wrk"], sum(c), ratio)
			}
		}
	}
	fmt.Fprintf(&b, "\nRedis commands per request by command (last run; INFO commandstats counts the commands a Lua script runs as well as the EVALSHA):\n\n")
	for _, route := range []string{"read", "add"} {
		for _, sys := range loadSystems {
			per := breakdown[route][sys]
			var parts []string
			for _, c := range sortedByValue(per) {
				parts = append(parts, fmt.Sprintf("%s %.2f", c, per[c]))
			}
			fmt.Fprintf(&b, "- %s, %s: %s\n", route, sys, strings.Join(parts, ", "))
		}
	}
	return b.String()
}

func sortedByValue(m map[string]float64) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, func(a, b string) int {
		if m[a] != m[b] {
			if m[a] > m[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	return ks
}
