package main

// One job run's processes: the clone, then the command, each in its own session (so its process
// group can be signalled as a whole and outlives nothing it should not), with its output split into
// lines and handed to the agent loop as events.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	pb "agent-jobs/agent-go/generated/agent/v1"
)

type stopKind int

const (
	stopNone     stopKind = iota
	stopCancel            // CancelJob: JobFinished CANCELLED
	stopGiveBack          // lease ran out or the agent is shutting down: JobRejected
	stopDrop              // DropJob, Notice UNKNOWN_JOB, Welcome.cancel_job_ids: nothing more is said
)

// procControl is the part of a runner other goroutines touch: the stop request and the live group.
type procControl struct {
	mu        sync.Mutex
	pgid      int
	kind      stopKind
	reason    string
	killTimer *time.Timer
	killed    bool
	grace     time.Duration
}

// stop asks the run to stop: SIGTERM to the group, SIGKILL after grace (at once when grace is 0).
// The first cause decides the outcome; a later one can only make the kill sooner.
func (p *procControl) stop(kind stopKind, reason string, grace time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if kind == stopDrop {
		grace = 0
	}
	if p.kind == stopNone {
		p.kind, p.reason, p.grace = kind, reason, grace
	} else {
		if kind == stopDrop {
			p.kind = stopDrop
		}
		if grace < p.grace {
			p.grace = grace
		}
	}
	p.signalLocked(grace)
}

func (p *procControl) signalLocked(grace time.Duration) {
	if p.pgid <= 0 || p.kind == stopNone {
		return
	}
	if grace <= 0 {
		p.killLocked()
		return
	}
	if p.killTimer == nil {
		syscall.Kill(-p.pgid, syscall.SIGTERM)
		pgid := p.pgid
		p.killTimer = time.AfterFunc(grace, func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.pgid == pgid {
				p.killLocked()
			}
		})
	}
}

func (p *procControl) killLocked() {
	if p.pgid > 0 {
		syscall.Kill(-p.pgid, syscall.SIGKILL)
		p.killed = true
	}
}

func (p *procControl) state() (stopKind, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kind, p.reason
}

// setGroup records the group of a process just started; a stop asked before it applies at once.
func (p *procControl) setGroup(pgid int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pgid, p.killTimer, p.killed = pgid, nil, false
	p.signalLocked(p.grace)
}

func (p *procControl) clearGroup() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.killTimer != nil {
		p.killTimer.Stop()
	}
	p.pgid, p.killTimer = 0, nil
}

func (p *procControl) killNow() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.killLocked()
}

// runner prepares and runs one job; it reports through events to the agent loop.
type runner struct {
	r      *run
	asg    *pb.JobAssignment
	opts   *options
	folder string
	store  runStore
	events chan<- event
}

func (x *runner) emit(stream pb.LogStream, text string) {
	x.events <- event{kind: evLine, run: x.r, logStream: stream, text: text, at: time.Now()}
}

// system writes a line of the agent's own; it may quote git, whose output need not be UTF-8.
func (x *runner) system(text string) { x.emit(pb.LogStream_LOG_STREAM_SYSTEM, validText(text)) }

func (x *runner) finish(res runResult) {
	res.FinishedAt = time.Now()
	res.Reason = validText(res.Reason)
	x.events <- event{kind: evEnded, run: x.r, result: &res}
}

// stoppedResult is the result of a run stopped by a request, given how its process ended.
func (x *runner) stoppedResult(kind stopKind, reason string, exitCode *int32, what string) runResult {
	switch kind {
	case stopGiveBack:
		x.system(fmt.Sprintf("%s; stopped: the job goes back to the server (%s)", what, reason))
		return runResult{GiveBack: true, Reason: reason}
	default:
		x.system(fmt.Sprintf("%s; %s", what, reason))
		return runResult{Outcome: int32(pb.JobOutcome_JOB_OUTCOME_CANCELLED), ExitCode: exitCode, Reason: reason}
	}
}

func (x *runner) run() {
	ctl := x.r.ctl
	if x.folder == "" {
		x.system("agent error: the job id cannot name a folder")
		x.finish(runResult{Outcome: int32(pb.JobOutcome_JOB_OUTCOME_FAILED), Reason: "agent error: the job id cannot name a folder"})
		return
	}
	x.system("preparing " + x.folder)
	if err := prepareRunFolder(x.folder); err != nil {
		x.system("agent error: " + err.Error())
		x.finish(runResult{Outcome: int32(pb.JobOutcome_JOB_OUTCOME_FAILED), Reason: "agent error: " + err.Error()})
		return
	}
	repoDir := filepath.Join(x.folder, "repo")
	resultFile := filepath.Join(x.folder, "result.json")
	repo := x.asg.GetRepository()
	args := cloneArgs(x.asg, repoDir)
	shown := make([]string, len(args))
	for i, a := range args {
		shown[i] = a
		if a == repo.GetCloneUrl() {
			shown[i] = redactURL(a)
		}
	}
	if kind, reason := ctl.state(); kind != stopNone {
		x.finish(x.stoppedResult(kind, reason, nil, "stopped before the command started"))
		return
	}
	x.system("$ git " + strings.Join(shown, " "))
	// JOB_ID lets a restarted agent recognise the group of a git left running as this run's.
	gitEnv := authorEnv(append(withoutEnv(os.Environ(), "AGENT_TOKEN", "JOB_ID"), "GIT_TERMINAL_PROMPT=0", "JOB_ID="+x.asg.GetJobId()), x.opts.Author)
	var gitErr bytes.Buffer
	exit, startErr := x.spawn(spawnSpec{name: "git", args: args, dir: x.folder, env: gitEnv, outStream: pb.LogStream_LOG_STREAM_SYSTEM, errStream: pb.LogStream_LOG_STREAM_SYSTEM, errCopy: &gitErr})
	if startErr != nil {
		x.system("clone failed: could not run git: " + startErr.Error())
		x.finish(runResult{Outcome: int32(pb.JobOutcome_JOB_OUTCOME_FAILED), Reason: "clone failed: could not run git: " + startErr.Error()})
		return
	}
	git := x.gitIn(repoDir, gitEnv)
	var base, cloned, failure string
	if exit.Success() {
		var err error
		if base, cloned, failure, err = baseCommit(git, x.asg, x.system); err != nil {
			failure = "clone failed: cannot read the clone's head: " + err.Error()
		}
	}
	if kind, reason := ctl.state(); kind != stopNone {
		x.finish(x.stoppedResult(kind, reason, nil, "stopped before the command started"))
		return
	}
	if !exit.Success() {
		detail := gitFailure(gitErr.String())
		if detail == "" {
			detail = "git " + describeExit(exit)
		}
		x.finish(runResult{Outcome: int32(pb.JobOutcome_JOB_OUTCOME_FAILED), Reason: "clone failed: " + detail})
		return
	}
	if failure != "" {
		x.system(failure)
		x.finish(runResult{Outcome: int32(pb.JobOutcome_JOB_OUTCOME_FAILED), Reason: failure})
		return
	}

	env := withoutEnv(os.Environ(), "AGENT_TOKEN", "JOB_ID", "JOB_ATTEMPT", "JOB_PROMPT", "JOB_QUEUE", "JOB_REVISES_JOB_ID", "REPO_DIR", "REPO_URL", "REPO_BRANCH", "REPO_NAME",
		"JOB_RESULT_FILE", "JOB_PARENT_ID", "JOB_PARENT_BRANCH", "JOB_PARENT_HEAD", "JOB_PARENT_SUMMARY")
	queue := map[pb.JobQueue]string{pb.JobQueue_JOB_QUEUE_BACKLOG: "backlog", pb.JobQueue_JOB_QUEUE_REWORK: "rework"}[x.asg.GetQueue()]
	env = append(env,
		"JOB_ID="+x.asg.GetJobId(),
		"JOB_ATTEMPT="+strconv.FormatUint(uint64(x.asg.GetAttempt()), 10),
		"JOB_PROMPT="+x.asg.GetPrompt(),
		"JOB_QUEUE="+queue,
		"JOB_REVISES_JOB_ID="+x.asg.GetRevisesJobId(),
		"REPO_DIR="+repoDir,
		"REPO_URL="+repo.GetCloneUrl(),
		"REPO_BRANCH="+repo.GetDefaultBranch(),
		"REPO_NAME="+repo.GetName(),
		"JOB_RESULT_FILE="+resultFile,
	)
	env = authorEnv(append(env, parentEnv(x.asg)...), x.opts.Author)
	quoted, _ := json.Marshal(x.opts.Command)
	x.system("$ /bin/sh -c " + string(quoted))
	exit, startErr = x.spawn(spawnSpec{name: "/bin/sh", args: []string{"-c", x.opts.Command}, dir: repoDir, env: env,
		outStream: pb.LogStream_LOG_STREAM_STDOUT, errStream: pb.LogStream_LOG_STREAM_STDERR, onStart: func() {
			x.events <- event{kind: evStarted, run: x.r, at: time.Now()}
		}})
	if startErr != nil {
		x.system("agent error: could not run /bin/sh: " + startErr.Error())
		x.finish(runResult{Outcome: int32(pb.JobOutcome_JOB_OUTCOME_FAILED), Reason: "agent error: could not run /bin/sh: " + startErr.Error()})
		return
	}
	var code *int32
	if ws := exit.Sys().(syscall.WaitStatus); ws.Exited() {
		c := int32(ws.ExitStatus())
		code = &c
	}
	if kind, reason := ctl.state(); kind != stopNone {
		x.finish(x.stoppedResult(kind, reason, code, describeExit(exit)))
		return
	}
	x.system(describeExit(exit))
	if code == nil || *code != 0 {
		x.finish(runResult{Outcome: int32(pb.JobOutcome_JOB_OUTCOME_FAILED), ExitCode: code, Reason: describeExit(exit)})
		return
	}

	// The command succeeded: its change is committed, pushed and described. A stop that arrives
	// meanwhile stops the git at work; the change then goes undelivered and the run ends as stopped.
	change, err := makeChange(git, changeSpec{Asg: x.asg, Base: base, Cloned: cloned, BranchPrefix: x.opts.BranchPrefix, NoPush: x.opts.NoPush,
		PatchFile: x.store.patchFile(x.r.jobID, x.r.attempt), ResultFile: resultFile, Say: x.system})
	if err != nil {
		if kind, reason := ctl.state(); kind != stopNone {
			x.finish(x.stoppedResult(kind, reason, code, "stopped while delivering the change"))
			return
		}
		x.system(err.Error())
		x.finish(runResult{Outcome: int32(pb.JobOutcome_JOB_OUTCOME_FAILED), ExitCode: code, Reason: err.Error()})
		return
	}
	x.finish(runResult{Outcome: int32(pb.JobOutcome_JOB_OUTCOME_SUCCEEDED), ExitCode: code, Change: &storedChange{change}})
}

// gitIn runs git commands of the run in dir like its other processes (a group of their own that a
// stop reaches); git's stderr, and its stdout when not captured, go to the job's log.
func (x *runner) gitIn(dir string, env []string) gitFunc {
	return func(stdout io.Writer, args ...string) (int, string, error) {
		var stderr bytes.Buffer
		state, err := x.spawn(spawnSpec{name: "git", args: args, dir: dir, env: env, outStream: pb.LogStream_LOG_STREAM_SYSTEM,
			errStream: pb.LogStream_LOG_STREAM_SYSTEM, outTo: stdout, errCopy: &stderr})
		if err != nil {
			return -1, "", err
		}
		code := -1
		if ws := state.Sys().(syscall.WaitStatus); ws.Exited() {
			code = ws.ExitStatus()
		}
		return code, stderr.String(), nil
	}
}

// spawnSpec is one process of a run: its output goes to the job's log as lines of outStream and
// errStream, or stdout to outTo when set; errCopy, when set, keeps the first 64 KiB of stderr too.
type spawnSpec struct {
	name                 string
	args                 []string
	dir                  string
	env                  []string
	outStream, errStream pb.LogStream
	outTo                io.Writer
	errCopy              *bytes.Buffer
	onStart              func()
}

// spawn runs one process in a new session, streams its output as lines and waits for it. Once it
// has exited, what is left of its group is killed: a run leaves no process behind.
func (x *runner) spawn(spec spawnSpec) (*os.ProcessState, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd := exec.Command(spec.name, spec.args...)
	cmd.Dir, cmd.Env = spec.dir, spec.env
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, err
	}
	pgid := cmd.Process.Pid
	if werr := x.store.write(runRecord{JobID: x.r.jobID, Attempt: x.r.attempt, Pgid: pgid, Folder: x.folder}); werr != nil {
		logWarn("cannot write the run record", "jobId", x.r.jobID, "error", werr)
	}
	x.r.ctl.setGroup(pgid)
	if spec.onStart != nil {
		spec.onStart()
	}

	var wg sync.WaitGroup
	read := func(r *os.File, stream pb.LogStream, copyTo *bytes.Buffer, to io.Writer) {
		defer wg.Done()
		splitter := newLineSplitter(0)
		buf := make([]byte, 64*1024)
		var toErr error
		for {
			n, err := r.Read(buf)
			if n > 0 {
				if copyTo != nil && copyTo.Len() < 64*1024 {
					copyTo.Write(buf[:n])
				}
				if to != nil {
					if toErr == nil { // after an error, the rest is read and dropped, so the process never blocks
						_, toErr = to.Write(buf[:n])
					}
				} else {
					for _, line := range splitter.Push(buf[:n]) {
						x.emit(stream, line)
					}
				}
			}
			if err != nil {
				if err != io.EOF && !strings.Contains(err.Error(), "file already closed") {
					logDebug("output read ended", "error", err)
				}
				break
			}
		}
		for _, line := range splitter.End() {
			x.emit(stream, line)
		}
	}
	wg.Add(2)
	go read(outR, spec.outStream, nil, spec.outTo)
	go read(errR, spec.errStream, spec.errCopy, nil)
	state, _ := cmd.Process.Wait()

	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(2 * time.Second):
		// A process of the group (a daemon the command started) still holds a pipe.
		x.r.ctl.killNow()
		select {
		case <-drained:
		case <-time.After(2 * time.Second):
			x.system("an output pipe is still held open by a process outside the job; no longer reading it")
			outR.Close()
			errR.Close()
			<-drained
		}
	}
	x.r.ctl.killNow() // whatever the command left running in its group
	x.r.ctl.clearGroup()
	outR.Close()
	errR.Close()
	return state, nil
}

func prepareRunFolder(folder string) error {
	if err := os.RemoveAll(folder); err != nil {
		return err
	}
	if err := os.MkdirAll(folder, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(folder, runFolderMarker), nil, 0o644)
}

func withoutEnv(env []string, names ...string) []string {
	out := make([]string, 0, len(env))
outer:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue outer
			}
		}
		out = append(out, kv)
	}
	return out
}

// gitFailure is git's reason: its "fatal:" line when there is one, else its last line.
func gitFailure(text string) string {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "fatal: "); ok && rest != "" {
			return rest
		}
	}
	return lastLine(text)
}

func lastLine(text string) string {
	lines := strings.Split(strings.TrimSpace(text), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return l
		}
	}
	return ""
}

var signalNames = map[syscall.Signal]string{
	syscall.SIGHUP: "SIGHUP", syscall.SIGINT: "SIGINT", syscall.SIGQUIT: "SIGQUIT", syscall.SIGILL: "SIGILL",
	syscall.SIGABRT: "SIGABRT", syscall.SIGBUS: "SIGBUS", syscall.SIGFPE: "SIGFPE", syscall.SIGKILL: "SIGKILL",
	syscall.SIGSEGV: "SIGSEGV", syscall.SIGPIPE: "SIGPIPE", syscall.SIGALRM: "SIGALRM", syscall.SIGTERM: "SIGTERM",
	syscall.SIGUSR1: "SIGUSR1", syscall.SIGUSR2: "SIGUSR2",
}

func describeExit(state *os.ProcessState) string {
	ws := state.Sys().(syscall.WaitStatus)
	if ws.Exited() {
		return fmt.Sprintf("exited with code %d", ws.ExitStatus())
	}
	if ws.Signaled() {
		name, ok := signalNames[ws.Signal()]
		if !ok {
			name = fmt.Sprintf("signal %d", int(ws.Signal()))
		}
		return "killed by signal " + name
	}
	return "ended: " + state.String()
}

// redactURL masks credentials in a clone URL before it is logged.
func redactURL(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	userinfo, host, ok := strings.Cut(rest, "@")
	if !ok || strings.Contains(userinfo, "/") {
		return raw
	}
	user, _, hasPass := strings.Cut(userinfo, ":")
	masked := ""
	if user != "" {
		masked = "***"
	}
	if hasPass {
		masked += ":***"
	}
	return scheme + "://" + masked + "@" + host
}
