//go:build reliability

package reliability_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ---- the demo binary ----

// demoBuild is the demo binary built once per test run (cmd/demo's internal
// packages cannot be imported from here, so the demo runs as a process).
var demoBuild struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// demoBinary builds ./cmd/demo (without -race: it runs as a separate process)
// and returns its path.
func demoBinary(t testing.TB) string {
	t.Helper()
	demoBuild.once.Do(func() {
		demoBuild.dir, demoBuild.err = os.MkdirTemp("", "fxsession-reliability-demo-")
		if demoBuild.err != nil {
			return
		}
		demoBuild.bin = filepath.Join(demoBuild.dir, "demo")
		root, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			demoBuild.err = err
			return
		}
		cmd := exec.Command("go", "build", "-o", demoBuild.bin, "./cmd/demo")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			demoBuild.err = fmt.Errorf("go build ./cmd/demo: %v\n%s", err, out)
		}
	})
	if demoBuild.err != nil {
		t.Fatal(demoBuild.err)
	}
	return demoBuild.bin
}

// cleanupDemo removes the demo binary.
func cleanupDemo() {
	if demoBuild.dir != "" {
		_ = os.RemoveAll(demoBuild.dir)
	}
}

// demoProc is one running "demo serve".
type demoProc struct {
	name string
	cmd  *exec.Cmd
	base string
	out  *lockedLog
	done chan struct{}
	err  error // the exit, once done is closed
}

var listening = regexp.MustCompile(`msg="demo shop listening" addr=(\S+)`)

// startDemo runs "demo serve" on a free loopback port with its own catalog and
// waits until it listens. It is killed when the test ends unless stopped.
func startDemo(t testing.TB, name string, args ...string) *demoProc {
	t.Helper()
	catalog := filepath.Join(t.TempDir(), "catalog.db")
	cmd := exec.Command(demoBinary(t), append([]string{"serve", "-addr", "127.0.0.1:0", "-catalog", catalog}, args...)...)
	cmd.Env = append(os.Environ(), "GOTRACEBACK=all")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &demoProc{name: name, cmd: cmd, out: &lockedLog{}, done: make(chan struct{})}
	cmd.Stdout = p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		found := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(p.out, line)
			if m := listening.FindStringSubmatch(line); m != nil && !found {
				found = true
				addr <- m[1]
			}
		}
		_, _ = io.Copy(p.out, stderr)
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out)
		}
	})
	select {
	case a := <-addr:
		p.base = "http://" + a
	case <-p.done:
		t.Fatalf("%s exited during start-up (%v):\n%s", name, p.err, p.out)
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not listen within 60 s:\n%s", name, p.out)
	}
	return p
}

// terminate sends SIGTERM and waits for the exit.
func (p *demoProc) terminate(t testing.TB) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not exit within 30 s of SIGTERM", p.name)
	}
	return time.Since(start), p.err
}

// demoTarget drives demo processes through their JSON API.
func demoTarget(t testing.TB, name string, procs ...*demoProc) *faultTarget {
	hc := httpClient(t)
	var bases []string
	for _, p := range procs {
		bases = append(bases, p.base)
	}
	return &faultTarget{
		name:  name,
		bases: bases,
		hc:    hc,
		plain: []string{"/healthz", "/api/products"},
		get:   func(v *visitor, base string) reply { return v.send(hc, base, "GET", "/api/basket") },
		add: func(v *visitor, base string) reply {
			return v.sendJSON(hc, base, "POST", "/api/basket/items", `{"sku":"tea-assam","qty":1}`)
		},
		countOf: demoCount,
	}
}

// demoCount is the number of units in a demo basket answer.
func demoCount(t testing.TB, r reply) int {
	t.Helper()
	var b struct {
		Items []struct {
			Qty int `json:"qty"`
		} `json:"items"`
	}
	if err := json.Unmarshal(r.Body, &b); err != nil {
		t.Fatalf("demo basket %q (status %d): %v", r.Body, r.Status, err)
	}
	n := 0
	for _, it := range b.Items {
		n += it.Qty
	}
	return n
}
