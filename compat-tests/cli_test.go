package compattests

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// cliRun is what one run of the pubg1 binary printed and how it exited.
type cliRun struct {
	stdout, stderr string
	code           int
}

// runCLI runs pubg1 with args as a user would from a shell and returns
// its output and exit code.
func runCLI(t *testing.T, args ...string) cliRun {
	t.Helper()
	return runCLIWithInput(t, "", args...)
}

// runCLIWithInput is runCLI with input on pubg1's stdin.
func runCLIWithInput(t *testing.T, input string, args ...string) cliRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, brokerBin, args...)
	cmd.Dir = t.TempDir()
	cmd.Stdin = strings.NewReader(input)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("pubg1 %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), ctx.Err(), stdout.String(), stderr.String())
	}
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("pubg1 %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return cliRun{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// errorLine checks that a failed run exited with code and printed exactly
// one line, "pubg1: ...", to stderr, and returns that line.
func (r cliRun) errorLine(t *testing.T, code int, what string) string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if r.code != code || len(lines) != 1 || !strings.HasPrefix(lines[0], "pubg1: ") {
		t.Errorf("%s: exit code %d (want %d), stderr should be one line \"pubg1: ...\":\n%s", what, r.code, code, r.stderr)
	}
	if strings.Contains(r.stderr, "\x1b[") {
		t.Errorf("%s: colours on a pipe:\n%q", what, r.stderr)
	}
	return lines[0]
}

func TestCLIVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := runCLI(t, args...)
		if r.code != 0 || r.stderr != "" {
			t.Errorf("pubg1 %s: exit code %d, stderr:\n%s", args[0], r.code, r.stderr)
		}
		if !regexp.MustCompile(`^pubg1 \S+\n`).MatchString(r.stdout) || !regexp.MustCompile(`(?m)^go go1\.\d+`).MatchString(r.stdout) {
			t.Errorf("pubg1 %s printed:\n%s", args[0], r.stdout)
		}
		if strings.Contains(r.stdout, "ApiVersions") {
			t.Errorf("pubg1 %s lists the Kafka APIs without --verbose:\n%s", args[0], r.stdout)
		}
	}
	r := runCLI(t, "version", "--verbose")
	if r.code != 0 {
		t.Fatalf("pubg1 version --verbose: exit code %d:\n%s", r.code, r.stderr)
	}
	// A few APIs every Kafka client needs, each with its key and range.
	for _, api := range []string{`0\s+Produce`, `1\s+Fetch`, `3\s+Metadata`, `18\s+ApiVersions`} {
		if !regexp.MustCompile(`(?m)^` + api + `\s+\d+-\d+$`).MatchString(r.stdout) {
			t.Errorf("pubg1 version --verbose lacks %s:\n%s", api, r.stdout)
		}
	}
}

func TestCLIUsageError(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--no-such-flag"}, "unknown flag --no-such-flag"},
		{[]string{"topic", "create"}, `expected "<name>"`},
		{[]string{"no-such-command"}, "unexpected argument no-such-command"},
	} {
		r := runCLI(t, tt.args...)
		lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
		if r.code != 2 || len(lines) != 2 || lines[0] != "pubg1: "+tt.want || !strings.Contains(lines[1], `--help" for usage`) || r.stdout != "" {
			t.Errorf("pubg1 %s: exit code %d (want 2), stdout %q, stderr:\n%s", strings.Join(tt.args, " "), r.code, r.stdout, r.stderr)
		}
	}
}

// TestCLITopicCreate creates topics with configs given the ways -c allows
// and checks the broker's configs, then creates one again and checks the
// error.
func TestCLITopicCreate(t *testing.T) {
	b := startBroker(t)
	ctx := testContext(t, 2*time.Minute)
	adm := newAdmin(t, b)
	props := filepath.Join(t.TempDir(), "topic.properties")
	if err := os.WriteFile(props, []byte("# retention and cleanup\nretention.ms = 5400000\n\ncleanup.policy=compact,delete\n! old-style comment\nsegment.bytes: 2097152\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	for topic, tt := range map[string]struct {
		flags []string
		want  map[string]string
	}{
		"cli-commas": {
			[]string{"-c", "retention.ms=3600000,cleanup.policy=compact,delete,max.message.bytes=2000000"},
			map[string]string{"retention.ms": "3600000", "cleanup.policy": "compact,delete", "max.message.bytes": "2000000"},
		},
		"cli-repeated": {
			[]string{"-c", "retention.ms=7200000", "-c", "segment.bytes=1048576", "-c", "retention.bytes=1000000;min.insync.replicas=1"},
			map[string]string{"retention.ms": "7200000", "segment.bytes": "1048576", "retention.bytes": "1000000", "min.insync.replicas": "1"},
		},
		"cli-config-file": {
			[]string{"--config-file", props, "-c", "max.message.bytes=2000000"},
			map[string]string{"retention.ms": "5400000", "cleanup.policy": "compact,delete", "segment.bytes": "2097152", "max.message.bytes": "2000000"},
		},
	} {
		r := runCLI(t, append([]string{"topic", "create", topic, "--brokers", b.Addr()}, tt.flags...)...)
		if r.code != 0 {
			t.Errorf("topic create %s: exit code %d:\n%s", topic, r.code, r.stderr)
			continue
		}
		rc, err := adm.DescribeTopicConfigs(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		got, err := rc.On(topic, nil)
		if err != nil || got.Err != nil {
			t.Fatalf("describing %s: %v %v", topic, err, got.Err)
		}
		for k, want := range tt.want {
			found := false
			for _, c := range got.Configs {
				if c.Key == k && c.Value != nil {
					found = true
					if *c.Value != want {
						t.Errorf("%s: %s = %s, want %s", topic, k, *c.Value, want)
					}
				}
			}
			if !found {
				t.Errorf("%s: %s not described", topic, k)
			}
		}
	}

	r := runCLI(t, "topic", "create", "cli-commas", "--brokers", b.Addr())
	line := r.errorLine(t, 1, "creating an existing topic")
	// The error's name once, its meaning once.
	if strings.Count(line, "TOPIC_ALREADY_EXISTS") != 1 || strings.Count(strings.ToLower(line), "already exists") != 1 {
		t.Errorf("creating an existing topic: %s", line)
	}
	r = runCLI(t, "topic", "create", "cli-twice", "--brokers", b.Addr(), "--config-file", props, "-c", "retention.ms=1")
	if line := r.errorLine(t, 1, "a config in the file and in -c"); !strings.Contains(line, "retention.ms given twice") {
		t.Errorf("a config in the file and in -c: %s", line)
	}
}

// closedAddr is an address on which nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestCLIClosedPort(t *testing.T) {
	addr := closedAddr(t)
	for _, args := range [][]string{{"topic", "list"}, {"group", "list"}, {"topic", "create", "x"}, {"group", "describe"}} {
		r := runCLI(t, append(args, "--brokers", addr, "--timeout", "20s")...)
		line := r.errorLine(t, 1, strings.Join(args, " "))
		if !strings.Contains(line, "cannot reach broker "+addr+": connection refused") ||
			strings.Contains(line, "shard") || strings.Count(line, "connection refused") != 1 {
			t.Errorf("pubg1 %s against a closed port: %s", strings.Join(args, " "), line)
		}
	}
}

// TestCLIServeChecksFirst starts serve on a taken port and with a bad flag
// value: each fails with one line naming the problem and creates no data
// directory.
func TestCLIServeChecksFirst(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tt := range []struct {
		name  string
		flags []string
		want  string
	}{
		{"port taken", []string{"--listen", taken.Addr().String()}, "--listen " + taken.Addr().String() + ": address already in use"},
		{"debug port taken", []string{"--listen", "127.0.0.1:0", "--debug-listen", taken.Addr().String()}, "--debug-listen " + taken.Addr().String() + ": address already in use"},
		{"bad flag", []string{"--listen", "127.0.0.1:0", "--max-request-bytes", "0"}, "--max-request-bytes 0 is below 1024"},
		{"two bad flags", []string{"--listen", "127.0.0.1:0", "--num-partitions", "0", "--log-cleaner-backoff", "0s"}, "--num-partitions 0 must be at least 1; --log-cleaner-backoff 0s must be positive"},
	} {
		data := filepath.Join(t.TempDir(), "data")
		r := runCLI(t, append([]string{"serve", "--data", data}, tt.flags...)...)
		if line := r.errorLine(t, 1, tt.name); line != "pubg1: "+tt.want {
			t.Errorf("%s: %q, want %q", tt.name, line, "pubg1: "+tt.want)
		}
		if _, err := os.Stat(data); !os.IsNotExist(err) {
			t.Errorf("%s: the data directory was created (%v)", tt.name, err)
		}
	}
}
