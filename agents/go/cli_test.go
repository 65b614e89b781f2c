package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func env(values map[string]string) func(string) string {
	return func(k string) string { return values[k] }
}

func TestParseCliDefaults(t *testing.T) {
	o, err := parseCli([]string{"--server", "localhost:50051", "--exec", "echo hi"}, env(map[string]string{"AGENT_TOKEN": "ajt_x"}), "/home/u", "box")
	if err != nil {
		t.Fatal(err)
	}
	if o.Server != (serverTarget{"localhost:50051", false}) || o.Token != "ajt_x" || o.Command != "echo hi" || o.Name != "box" ||
		o.Capacity != 1 || o.StateDir != "/home/u/.agent-jobs" || o.WorkDir != "/home/u/.agent-jobs/work" || o.HeartbeatFallback != 10*time.Second || len(o.Labels) != 0 ||
		o.BranchPrefix != "agent-jobs/" || o.Author != (gitAuthor{"agent-jobs", "agent-jobs@localhost"}) || o.NoPush {
		t.Fatalf("unexpected options %+v", o)
	}
}

func TestParseCliFlagsAndEnv(t *testing.T) {
	o, err := parseCli([]string{"--token=t", "--labels", " gpu,linux,,gpu ", "--capacity", "3", "--state-dir", "~/s", "--work-dir=/w", "--heartbeat", "500ms", "--name", " n "},
		env(map[string]string{"AGENT_SERVER": "https://example.test", "AGENT_EXEC": "true", "AGENT_TOKEN": "ignored"}), "/home/u", "box")
	if err != nil {
		t.Fatal(err)
	}
	if o.Server != (serverTarget{"example.test:443", true}) || o.Token != "t" || o.Command != "true" || o.Capacity != 3 ||
		o.StateDir != "/home/u/s" || o.WorkDir != "/w" || o.HeartbeatFallback != 500*time.Millisecond || o.Name != "n" ||
		len(o.Labels) != 2 || o.Labels[0] != "gpu" || o.Labels[1] != "linux" {
		t.Fatalf("unexpected options %+v", o)
	}
}

func TestParseCliChangeOptions(t *testing.T) {
	base := map[string]string{"AGENT_TOKEN": "t", "AGENT_EXEC": "true", "AGENT_SERVER": "h:1"}
	with := func(extra map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range base {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	o, err := parseCli([]string{"--branch-prefix", " bots/agent.x/ ", "--git-author", "  Jane Q. Bot  <jane@bots.example> ", "--no-push"},
		env(with(map[string]string{"AGENT_BRANCH_PREFIX": "ignored/", "AGENT_GIT_AUTHOR": "Ignored <i@x>"})), "/h", "b")
	if err != nil {
		t.Fatal(err)
	}
	if o.BranchPrefix != "bots/agent.x/" || o.Author != (gitAuthor{"Jane Q. Bot", "jane@bots.example"}) || !o.NoPush {
		t.Fatalf("flags: %+v", o)
	}
	o, err = parseCli(nil, env(with(map[string]string{"AGENT_BRANCH_PREFIX": "ci-", "AGENT_GIT_AUTHOR": "CI<ci@x>", "AGENT_NO_PUSH": "true"})), "/h", "b")
	if err != nil {
		t.Fatal(err)
	}
	if o.BranchPrefix != "ci-" || o.Author != (gitAuthor{"CI", "ci@x"}) || !o.NoPush {
		t.Fatalf("environment: %+v", o)
	}
	for value, want := range map[string]bool{"1": true, "TRUE": true, "0": false, "false": false, "": false} {
		o, err := parseCli(nil, env(with(map[string]string{"AGENT_NO_PUSH": value})), "/h", "b")
		if err != nil || o.NoPush != want {
			t.Errorf("AGENT_NO_PUSH=%q: got %v %v", value, o, err)
		}
	}
	if o, err := parseCli([]string{"--branch-prefix="}, env(base), "/h", "b"); err != nil || o.BranchPrefix != "" {
		t.Errorf("an empty prefix: %v %v", o, err)
	}
}

func TestValidBranchPrefix(t *testing.T) {
	for _, good := range []string{"agent-jobs/", "", "a", "a/b/c-", "x.y/", "v1.2_", "a.lock-", "a.", "a./b/", "x.lockb/"} {
		if !validBranchPrefix(good) {
			t.Errorf("%q: want valid", good)
		}
	}
	for _, bad := range []string{"/a", "-a", "a//b", "a..b", "a.lock", "a b/", "a~", "a^", "a:", "a?", "a*", "a[", "a\\", "a@{",
		".a/", "a/.b", "a.lock/", "é/", "../x"} {
		if validBranchPrefix(bad) {
			t.Errorf("%q: want invalid", bad)
		}
	}
}

func TestParseGitAuthor(t *testing.T) {
	good := map[string]gitAuthor{
		"agent-jobs <agent-jobs@localhost>": {"agent-jobs", "agent-jobs@localhost"},
		"Jane Doe<jane@x>":                  {"Jane Doe", "jane@x"},
		" Ünïcode Näme <u@x.example> ":      {"Ünïcode Näme", "u@x.example"},
	}
	for in, want := range good {
		if got, ok := parseGitAuthor(in); !ok || got != want {
			t.Errorf("%q: got %+v %v", in, got, ok)
		}
	}
	for _, bad := range []string{"", "Jane", "<jane@x>", "Jane <>", "Jane <a b>", "Jane <j@x> extra", "Ja<ne <j@x>", "Jane\n <j@x>", "Jane <j@x"} {
		if got, ok := parseGitAuthor(bad); ok {
			t.Errorf("%q: want invalid, got %+v", bad, got)
		}
	}
}

func TestParseCliHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"--server", "x:1", "--help"}} {
		o, err := parseCli(args, env(nil), "/h", "b")
		if o != nil || err != nil {
			t.Fatalf("%v: want help, got %+v %v", args, o, err)
		}
	}
}

func TestParseCliErrors(t *testing.T) {
	base := map[string]string{"AGENT_TOKEN": "t", "AGENT_EXEC": "true", "AGENT_SERVER": "h:1"}
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{}, map[string]string{}, "--server (or AGENT_SERVER) is required"},
		{[]string{"--server", "h:1"}, map[string]string{"AGENT_EXEC": "x"}, "--token (or AGENT_TOKEN) is required"},
		{[]string{"--server", "h:1", "--token", "t"}, map[string]string{}, "--exec (or AGENT_EXEC) is required"},
		{[]string{"--server", "nohost"}, base, `--server must be host:port or https://host[:port], got "nohost"`},
		{[]string{"--server", "h:70000"}, base, `--server must be host:port or https://host[:port], got "h:70000"`},
		{[]string{"--capacity", "0"}, base, `--capacity must be a whole number from 1 to 1000, got "0"`},
		{[]string{"--capacity", "1.5"}, base, `--capacity must be a whole number from 1 to 1000, got "1.5"`},
		{[]string{"--heartbeat", "50ms"}, base, `--heartbeat must be a duration of at least 100ms (e.g. 10s), got "50ms"`},
		{[]string{"--heartbeat", "soon"}, base, `--heartbeat must be a duration of at least 100ms (e.g. 10s), got "soon"`},
		{[]string{"--bogus"}, base, "unknown option '--bogus'"},
		{[]string{"--exec"}, base, "option '--exec <value>' argument missing"},
		{[]string{"echo", "hi"}, base, "unexpected argument: echo (did you forget to quote --exec?)"},
		{[]string{"--name", "  "}, base, "--name must not be empty"},
		{[]string{"--no-push=yes"}, base, "option '--no-push' does not take an argument"},
		{[]string{"--git-author", "Jane"}, base, `--git-author must be "Name <email>", got "Jane"`},
		{[]string{}, map[string]string{"AGENT_TOKEN": "t", "AGENT_EXEC": "true", "AGENT_SERVER": "h:1", "AGENT_GIT_AUTHOR": "<a@b>"}, `--git-author must be "Name <email>", got "<a@b>"`},
		{[]string{}, map[string]string{"AGENT_TOKEN": "t", "AGENT_EXEC": "true", "AGENT_SERVER": "h:1", "AGENT_NO_PUSH": "yes"}, `AGENT_NO_PUSH must be 1, true, 0 or false, got "yes"`},
		{[]string{"--branch-prefix", " a..b/ "}, base, `--branch-prefix must be letters, digits and ._/- that git accepts in a branch name (e.g. agent-jobs/), got "a..b/"`},
		{[]string{"--branch-prefix", strings.Repeat("a/", 101)}, base, "--branch-prefix must be at most 200 characters, got 202"},
	}
	for _, c := range cases {
		_, err := parseCli(c.args, env(c.env), "/h", "b")
		var ue *usageError
		if !errors.As(err, &ue) || ue.msg != c.want {
			t.Errorf("%v: want %q, got %v", c.args, c.want, err)
		}
	}
}

func TestParseServer(t *testing.T) {
	good := map[string]serverTarget{
		"localhost:50051":          {"localhost:50051", false},
		"http://10.0.0.1:80/":      {"10.0.0.1:80", false},
		"https://agents.test":      {"agents.test:443", true},
		"https://agents.test:8443": {"agents.test:8443", true},
		"[::1]:50051":              {"[::1]:50051", false},
	}
	for in, want := range good {
		got, err := parseServer(in)
		if err != nil || got != want {
			t.Errorf("%s: got %+v %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "localhost", "http://localhost", "h:0", "a b:1", "ftp://h:1"} {
		if _, err := parseServer(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

func TestParseHumanDuration(t *testing.T) {
	want := map[string]time.Duration{"500ms": 500 * time.Millisecond, "10s": 10 * time.Second, "1m": time.Minute, "2500": 2500 * time.Millisecond, "1.5s": 1500 * time.Millisecond, "1h": time.Hour}
	for in, d := range want {
		if got, ok := parseHumanDuration(in); !ok || got != d {
			t.Errorf("%s: got %v %v", in, got, ok)
		}
	}
	for _, bad := range []string{"", "-1s", "1d", "ms", "1 s x"} {
		if _, ok := parseHumanDuration(bad); ok {
			t.Errorf("%q: want invalid", bad)
		}
	}
}
