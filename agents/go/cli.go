package main

// The command line and environment, turned into validated options. Pure: no I/O, so every bad value
// is reported before the agent touches the disk or the network. Same flags, defaults and messages as
// the TypeScript reference agent, so either binary can be run by the same scripts.

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

const usage = `Usage: agent-jobs-agent-go --server <host:port> --token <token> --exec '<shell command>' [options]

Runs jobs from the agent-jobs control plane: clones each job's repository and runs
<shell command> in it with /bin/sh -c.

Required (flag or environment):
  --server <addr>     gRPC endpoint: host:port (plaintext) or https://host[:port] (TLS)
                      [AGENT_SERVER]
  --token <token>     organisation agent token [AGENT_TOKEN]; prefer the environment
                      variable, since flags are visible in the process list
  --exec <command>    shell command run for each job [AGENT_EXEC]. It runs in the clone
                      with JOB_ID, JOB_ATTEMPT, JOB_PROMPT, JOB_QUEUE, JOB_REVISES_JOB_ID,
                      JOB_RESULT_FILE, REPO_DIR, REPO_URL, REPO_BRANCH, REPO_NAME set, and for
                      rework jobs JOB_PARENT_ID, JOB_PARENT_BRANCH, JOB_PARENT_HEAD,
                      JOB_PARENT_SUMMARY (AGENT_TOKEN removed)

Options:
  --name <name>       name shown to users (default: host name)
  --labels <a,b>      labels this agent offers; jobs needing others are not sent here
  --capacity <n>      jobs run at once (default 1)
  --work-dir <dir>    where job folders are made (default: <state-dir>/work)
  --state-dir <dir>   where the agent keeps its id and run records (default: ~/.agent-jobs)
  --heartbeat <dur>   heartbeat interval used until the server's Welcome names one
                      (default 10s; e.g. 500ms, 10s, 1m; a bare number is ms)

The change (after a command that exits 0): what the command left uncommitted is committed,
the branch pushed and its diff reported to the server. Pushing uses whatever credentials
git on this machine has.
  --branch-prefix <p> branch of a backlog job: <p><job id> (default agent-jobs/)
                      [AGENT_BRANCH_PREFIX]; a rework job pushes onto its parent's branch
  --git-author <a>    author of the agent's commits, "Name <email>" (default
                      "agent-jobs <agent-jobs@localhost>") [AGENT_GIT_AUTHOR]; also the
                      command's GIT_AUTHOR_*/GIT_COMMITTER_* unless the agent's environment
                      sets them
  --no-push           keep branches local; the diff is still reported [AGENT_NO_PUSH=1]
  -h, --help          show this text

Signals: SIGINT/SIGTERM stop taking jobs, stop running ones (SIGTERM, then SIGKILL
after the job's cancel grace) and give them back to the server, which runs them again
on another agent (the attempt counts); then exit 0. A second signal kills at once (130).
Exit codes: 0 stopped by a signal, 1 the server refused the agent (e.g. revoked token)
or the address does not speak gRPC, 2 bad arguments or state directory.`

// serverTarget is where the agent connects: host:port, plaintext or TLS.
type serverTarget struct {
	Address string
	TLS     bool
}

type options struct {
	Server            serverTarget
	Token             string
	Command           string
	Name              string
	Labels            []string
	Capacity          int
	WorkDir           string
	StateDir          string
	HeartbeatFallback time.Duration
	// BranchPrefix names a backlog job's branch: BranchPrefix + job id.
	BranchPrefix string
	Author       gitAuthor
	// NoPush: changes are committed and reported, with pushed = false, but not pushed.
	NoPush bool
}

// gitAuthor is who the agent's commits are by (author and committer alike).
type gitAuthor struct {
	Name  string
	Email string
}

const (
	defaultBranchPrefix = "agent-jobs/"
	defaultGitAuthor    = "agent-jobs <agent-jobs@localhost>"
	// maxBranchPrefix leaves room for the job id within the 255 characters the server keeps of a branch.
	maxBranchPrefix = 200
)

// usageError is a mistake in the arguments: main prints it with the usage and exits 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

var stringFlags = map[string]bool{
	"server": true, "token": true, "exec": true, "name": true, "labels": true,
	"capacity": true, "work-dir": true, "state-dir": true, "heartbeat": true,
	"branch-prefix": true, "git-author": true,
}

var boolFlags = map[string]bool{"no-push": true}

// parseCli returns (nil, nil) for --help.
func parseCli(argv []string, getenv func(string) string, homeDir, hostname string) (*options, error) {
	flags := map[string]string{}
	help := false
	for i := 0; i < len(argv); i++ {
		arg := argv[i]
		switch {
		case arg == "-h" || arg == "--help":
			help = true
		case arg == "--":
			if i+1 < len(argv) {
				return nil, usageErrorf("unexpected argument: %s (did you forget to quote --exec?)", argv[i+1])
			}
		case strings.HasPrefix(arg, "--"):
			name, value, hasValue := strings.Cut(arg[2:], "=")
			if boolFlags[name] {
				if hasValue {
					return nil, usageErrorf("option '--%s' does not take an argument", name)
				}
				flags[name] = "true"
				continue
			}
			if !stringFlags[name] {
				return nil, usageErrorf("unknown option '--%s'", name)
			}
			if !hasValue {
				if i+1 >= len(argv) {
					return nil, usageErrorf("option '--%s <value>' argument missing", name)
				}
				i++
				value = argv[i]
			}
			flags[name] = value
		case strings.HasPrefix(arg, "-") && arg != "-":
			return nil, usageErrorf("unknown option '%s'", arg)
		default:
			return nil, usageErrorf("unexpected argument: %s (did you forget to quote --exec?)", arg)
		}
	}
	if help {
		return nil, nil
	}
	get := func(flag, env string) (string, bool) {
		if v, ok := flags[flag]; ok {
			return v, true
		}
		if env != "" {
			if v := getenv(env); v != "" {
				return v, true
			}
		}
		return "", false
	}
	required := func(flag, env string) (string, error) {
		v, _ := get(flag, env)
		if strings.TrimSpace(v) == "" {
			return "", usageErrorf("--%s (or %s) is required", flag, env)
		}
		return strings.TrimSpace(v), nil
	}
	serverText, err := required("server", "AGENT_SERVER")
	if err != nil {
		return nil, err
	}
	server, err := parseServer(serverText)
	if err != nil {
		return nil, err
	}
	token, err := required("token", "AGENT_TOKEN")
	if err != nil {
		return nil, err
	}
	command, err := required("exec", "AGENT_EXEC")
	if err != nil {
		return nil, err
	}
	stateDir := filepath.Join(homeDir, ".agent-jobs")
	if v, ok := flags["state-dir"]; ok {
		stateDir = v
	}
	stateDir, err = filepath.Abs(expandHome(stateDir, homeDir))
	if err != nil {
		return nil, usageErrorf("--state-dir: %v", err)
	}
	workDir := filepath.Join(stateDir, "work")
	if v, ok := flags["work-dir"]; ok {
		workDir = v
	}
	workDir, err = filepath.Abs(expandHome(workDir, homeDir))
	if err != nil {
		return nil, usageErrorf("--work-dir: %v", err)
	}

	capacityText := "1"
	if v, ok := flags["capacity"]; ok {
		capacityText = v
	}
	capacity, convErr := strconv.Atoi(capacityText)
	if !regexp.MustCompile(`^\d+$`).MatchString(capacityText) || convErr != nil || capacity < 1 || capacity > 1000 {
		return nil, usageErrorf("--capacity must be a whole number from 1 to 1000, got %q", capacityText)
	}

	heartbeatText := "10s"
	if v, ok := flags["heartbeat"]; ok {
		heartbeatText = v
	}
	heartbeat, ok := parseHumanDuration(heartbeatText)
	if !ok || heartbeat < 100*time.Millisecond {
		return nil, usageErrorf("--heartbeat must be a duration of at least 100ms (e.g. 10s), got %q", heartbeatText)
	}

	labels := []string{}
	seen := map[string]bool{}
	for _, label := range strings.Split(flags["labels"], ",") {
		label = strings.TrimSpace(label)
		if label != "" && !seen[label] {
			seen[label] = true
			labels = append(labels, label)
		}
	}
	name := hostname
	if v, ok := flags["name"]; ok {
		name = v
	}
	name = strings.TrimSpace(name)
	if name == "" {
		return nil, usageErrorf("--name must not be empty")
	}

	branchPrefix := defaultBranchPrefix
	if v, ok := get("branch-prefix", "AGENT_BRANCH_PREFIX"); ok {
		branchPrefix = strings.TrimSpace(v)
	}
	if !validBranchPrefix(branchPrefix) {
		return nil, usageErrorf("--branch-prefix must be letters, digits and ._/- that git accepts in a branch name (e.g. agent-jobs/), got %q", branchPrefix)
	}
	if len(branchPrefix) > maxBranchPrefix {
		return nil, usageErrorf("--branch-prefix must be at most %d characters, got %d", maxBranchPrefix, len(branchPrefix))
	}
	authorText := defaultGitAuthor
	if v, ok := get("git-author", "AGENT_GIT_AUTHOR"); ok {
		authorText = v
	}
	author, ok := parseGitAuthor(authorText)
	if !ok {
		return nil, usageErrorf(`--git-author must be "Name <email>", got %q`, authorText)
	}
	noPush := flags["no-push"] == "true"
	if !noPush {
		switch v := strings.ToLower(strings.TrimSpace(getenv("AGENT_NO_PUSH"))); v {
		case "1", "true":
			noPush = true
		case "", "0", "false":
		default:
			return nil, usageErrorf("AGENT_NO_PUSH must be 1, true, 0 or false, got %q", getenv("AGENT_NO_PUSH"))
		}
	}
	return &options{Server: server, Token: token, Command: command, Name: name, Labels: labels, Capacity: capacity,
		WorkDir: workDir, StateDir: stateDir, HeartbeatFallback: heartbeat,
		BranchPrefix: branchPrefix, Author: author, NoPush: noPush}, nil
}

var branchPrefixRe = regexp.MustCompile(`^[A-Za-z0-9._/-]*$`)

// validBranchPrefix: <prefix><job id> must be a branch name git accepts (git check-ref-format): no
// part starts with "." or ends with ".lock", no "..", no "//", and no leading "/" or "-".
func validBranchPrefix(p string) bool {
	if !branchPrefixRe.MatchString(p) || strings.Contains(p, "..") || strings.Contains(p, "//") ||
		strings.HasPrefix(p, "/") || strings.HasPrefix(p, "-") || strings.HasSuffix(p, ".lock") {
		return false
	}
	for _, part := range strings.Split(p, "/") {
		if strings.HasPrefix(part, ".") || strings.HasSuffix(part, ".lock") {
			return false
		}
	}
	return true
}

var gitAuthorRe = regexp.MustCompile(`^([^<>]*[^<>\s])\s*<([^<>\s]+)>$`)

// parseGitAuthor reads "Name <email>" (no control characters: git would refuse a newline).
func parseGitAuthor(text string) (gitAuthor, bool) {
	text = strings.TrimSpace(text)
	m := gitAuthorRe.FindStringSubmatch(text)
	if m == nil || strings.ContainsFunc(text, unicode.IsControl) {
		return gitAuthor{}, false
	}
	return gitAuthor{Name: strings.TrimSpace(m[1]), Email: m[2]}, true
}

func expandHome(dir, homeDir string) string {
	if dir == "~" || strings.HasPrefix(dir, "~/") {
		return filepath.Join(homeDir, dir[1:])
	}
	return dir
}

var (
	schemeRe   = regexp.MustCompile(`^(https?)://(.+?)/?$`)
	hostPortRe = regexp.MustCompile(`^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$`)
	durationRe = regexp.MustCompile(`^(\d+(?:\.\d+)?)(ms|s|m|h)?$`)
)

// parseServer: host:port and http://host:port are plaintext; https://host[:port] is TLS (443 by default).
func parseServer(text string) (serverTarget, error) {
	hostPort, tls := text, false
	if m := schemeRe.FindStringSubmatch(text); m != nil {
		tls = m[1] == "https"
		hostPort = m[2]
	}
	m := hostPortRe.FindStringSubmatch(hostPort)
	port := ""
	if m != nil {
		port = m[2]
		if port == "" && tls {
			port = "443"
		}
	}
	n, _ := strconv.Atoi(port)
	if m == nil || port == "" || n < 1 || n > 65535 {
		return serverTarget{}, usageErrorf("--server must be host:port or https://host[:port], got %q", text)
	}
	return serverTarget{Address: m[1] + ":" + port, TLS: tls}, nil
}

// parseHumanDuration: "500ms", "10s", "2m", "1h"; a bare number is milliseconds, as in the
// server's settings and the TypeScript agent.
func parseHumanDuration(text string) (time.Duration, bool) {
	m := durationRe.FindStringSubmatch(strings.TrimSpace(text))
	if m == nil {
		return 0, false
	}
	amount, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, false
	}
	unit := map[string]time.Duration{"ms": time.Millisecond, "": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour}[m[2]]
	return time.Duration(amount*float64(unit/time.Millisecond)+0.5) * time.Millisecond, true
}

func formatDuration(d time.Duration) string {
	ms := d.Milliseconds()
	if ms%1000 == 0 {
		return fmt.Sprintf("%ds", ms/1000)
	}
	return fmt.Sprintf("%dms", ms)
}
