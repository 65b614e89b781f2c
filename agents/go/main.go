// Command agent-jobs-agent-go is an agent for the agent-jobs control plane (agent.v1), written from
// contracts/agent/v1/agent.proto; same command line and behaviour as the TypeScript reference agent.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func killSignal(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

func main() { os.Exit(realMain()) }

func realMain() int {
	home, _ := os.UserHomeDir()
	host, _ := os.Hostname()
	opts, err := parseCli(os.Args[1:], os.Getenv, home, host)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agent-jobs-agent-go: %s\n\n%s\n", err, usage)
		return 2
	}
	if opts == nil {
		fmt.Println(usage)
		return 0
	}
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	// A broken pipe to our own output must not kill the agent. Caught rather than ignored: an
	// ignored signal stays ignored in every command the agent starts, and a shell cannot trap it.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)

	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		fmt.Fprintf(os.Stderr, "agent-jobs-agent-go: cannot create --state-dir %s: %v\n", opts.StateDir, err)
		return 2
	}
	agentID, created, err := loadOrCreateAgentID(opts.StateDir)
	if err == nil {
		var release func()
		release, err = acquireStateLock(opts.StateDir)
		if err == nil {
			defer release()
		}
	}
	if err == nil {
		if mkErr := os.MkdirAll(opts.WorkDir, 0o755); mkErr != nil {
			err = &stateDirError{fmt.Sprintf("cannot create --work-dir %s: %v", opts.WorkDir, mkErr)}
		}
	}
	if err != nil {
		var sde *stateDirError
		if errors.As(err, &sde) {
			fmt.Fprintf(os.Stderr, "agent-jobs-agent-go: %s\n", err)
			return 2
		}
		fmt.Fprintf(os.Stderr, "agent-jobs-agent-go: %s\n", err)
		return 2
	}
	conn, err := dial(opts.Server)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agent-jobs-agent-go: %s\n", err)
		return 2
	}
	defer conn.Close()
	a := newAgent(opts, agentID, conn)
	a.restore()
	removeStaleRunFolders(opts.WorkDir)
	logInfo("agent starting", "agentId", agentID, "new", created, "server", opts.Server.Address, "tls", opts.Server.TLS, "name", opts.Name, "capacity", opts.Capacity, "version", agentVersion)
	code := a.loop(signals)
	logInfo("agent stopped", "exitCode", code)
	return code
}
