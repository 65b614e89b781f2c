package main

import (
	"errors"
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
		o.Capacity != 1 || o.StateDir != "/home/u/.agent-jobs" || o.WorkDir != "/home/u/.agent-jobs/work" || o.HeartbeatFallback != 10*time.Second || len(o.Labels) != 0 {
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
	want := map[string]time.Duration{"500ms": 500 * time.Millisecond, "10s": 10 * time.Second, "1m": time.Minute, "2": 2 * time.Second, "1.5s": 1500 * time.Millisecond, "1h": time.Hour}
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
