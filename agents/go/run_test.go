package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "agent-jobs/agent-go/generated/agent/v1"
)

// runJob runs asg with the runner as the agent would (clone, command, change), with no server: it
// returns the run's log lines, whether the command started, and how the run ended.
func runJob(t *testing.T, f *fixture, asg *pb.JobAssignment, command string, opts options) ([]string, bool, *runResult) {
	t.Helper()
	for _, kv := range f.env { // git in the runner reads the process environment
		name, value, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "GIT_") || name == "HOME" || name == "XDG_CONFIG_HOME" {
			t.Setenv(name, value)
		}
	}
	for _, name := range []string{"GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"} {
		if v, ok := os.LookupEnv(name); ok {
			t.Setenv(name, v)
			os.Unsetenv(name)
		}
	}
	asg.Repository = &pb.Repository{Id: "r", Name: "acme/web", CloneUrl: f.url, DefaultBranch: "main"}
	state := t.TempDir()
	opts.Command, opts.StateDir = command, state
	if opts.BranchPrefix == "" {
		opts.BranchPrefix = defaultBranchPrefix
	}
	if opts.Author == (gitAuthor{}) {
		opts.Author = testAuthor
	}
	events := make(chan event, 1<<16)
	r := &run{key: runKey(asg.GetJobId(), asg.GetAttempt()), jobID: asg.GetJobId(), attempt: asg.GetAttempt(), asg: asg, ctl: &procControl{}}
	x := &runner{r: r, asg: asg, opts: &opts, folder: filepath.Join(state, "work", runFolderName(r.jobID, r.attempt)),
		store: runStore{dir: filepath.Join(state, "runs")}, events: events}
	if err := os.MkdirAll(x.store.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	go x.run()
	var lines []string
	started := false
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev := <-events:
			switch ev.kind {
			case evLine:
				lines = append(lines, ev.text)
			case evStarted:
				started = true
			case evEnded:
				return lines, started, ev.result
			}
		case <-timeout:
			t.Fatalf("the run did not end; log so far: %q", lines)
		}
	}
}

func hasLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

func TestARunDeliversItsChange(t *testing.T) {
	f := newFixture(t)
	asg := backlogJob("Write the notes\nin detail")
	command := `set -e
echo "result=$JOB_RESULT_FILE"
echo "author=$GIT_AUTHOR_NAME <$GIT_AUTHOR_EMAIL>"
echo "parent=${JOB_PARENT_ID-unset}"
case "$JOB_RESULT_FILE" in "$REPO_DIR"/*) echo "inside the repo"; exit 3;; esac
echo notes > notes.md
printf '{"summary": "Wrote **notes**.", "pullRequestUrl": 5}' > "$JOB_RESULT_FILE"`
	lines, started, res := runJob(t, f, asg, command, options{})
	if !started || res.Outcome != int32(pb.JobOutcome_JOB_OUTCOME_SUCCEEDED) || res.Change == nil {
		t.Fatalf("outcome %d %q; log %q", res.Outcome, res.Reason, lines)
	}
	branch := "agent-jobs/" + jobID
	for _, want := range []string{"author=Robo Coder <robo@example.test>", "parent=unset", "exited with code 0",
		"ignoring the result file: pullRequestUrl is not a string", "$ git push --force origin HEAD:refs/heads/" + branch} {
		if !hasLine(lines, want) {
			t.Errorf("no line %q in %q", want, lines)
		}
	}
	c := res.Change.RunChange
	head := must(t, f.remoteGit(), "rev-parse", "refs/heads/"+branch)
	if c.GetBranch() != branch || !c.GetPushed() || c.GetBaseCommit() != f.seed || c.GetHeadCommit() != head || c.GetCommitCount() != 1 ||
		c.GetCommits()[0].GetSubject() != "Write the notes" || c.GetDiffStat().GetFilesChanged() != 1 || c.GetSummary() != "" || c.GetPatchSize() == 0 {
		t.Errorf("change %v", c)
	}
	if who := must(t, f.remoteGit(), "log", "-1", "--format=%an <%ae>", head); who != "Robo Coder <robo@example.test>" {
		t.Errorf("committed by %q", who)
	}
}

func TestARunThatFailsDeliversNothing(t *testing.T) {
	f := newFixture(t)
	lines, _, res := runJob(t, f, backlogJob("x"), "echo change > x.txt; exit 4", options{})
	if res.Outcome != int32(pb.JobOutcome_JOB_OUTCOME_FAILED) || res.Change != nil || res.Reason != "exited with code 4" {
		t.Fatalf("got %+v; log %q", res, lines)
	}
	if branches := must(t, f.remoteGit(), "branch", "--list"); branches != "* main" {
		t.Errorf("pushed after a failure: %q", branches)
	}
}

func TestARunWhosePushIsRefusedFails(t *testing.T) {
	f := newFixture(t)
	hook := filepath.Join(f.remote, "hooks", "pre-receive")
	writeFile(t, hook, "#!/bin/sh\necho 'protected' >&2\nexit 1\n")
	if err := os.Chmod(hook, 0o755); err != nil {
		t.Fatal(err)
	}
	lines, _, res := runJob(t, f, backlogJob("x"), "echo change > x.txt", options{})
	want := "push failed: ! [remote rejected] HEAD -> agent-jobs/" + jobID + " (pre-receive hook declined)"
	if res.Outcome != int32(pb.JobOutcome_JOB_OUTCOME_FAILED) || res.Change != nil || res.Reason != want || res.ExitCode == nil || *res.ExitCode != 0 {
		t.Fatalf("got %+v; log %q", res, lines)
	}
	if !strings.Contains(strings.Join(lines, "\n"), "\nremote: protected") || !hasLine(lines, want) {
		t.Errorf("git's output is not in the log: %q", lines)
	}
}

func TestAReworkRunOnAMovedBranchDoesNotStart(t *testing.T) {
	f := newFixture(t)
	moved := f.advance("main", "other.txt")
	lines, started, res := runJob(t, f, reworkJob("again", "main", f.seed), "echo ran", options{})
	want := "branch moved: main is at " + moved + ", the job revises " + f.seed
	if started || res.Outcome != int32(pb.JobOutcome_JOB_OUTCOME_FAILED) || res.Reason != want || res.ExitCode != nil {
		t.Fatalf("got %+v started=%v; log %q", res, started, lines)
	}
}

func TestAReworkRunSeesItsParent(t *testing.T) {
	f := newFixture(t)
	asg := reworkJob("Polish", "main", f.seed)
	command := `echo "$JOB_PARENT_ID|$JOB_PARENT_BRANCH|$JOB_PARENT_HEAD|$JOB_PARENT_SUMMARY|$JOB_QUEUE"; echo polish >> README.md`
	lines, _, res := runJob(t, f, asg, command, options{NoPush: true})
	if res.Outcome != int32(pb.JobOutcome_JOB_OUTCOME_SUCCEEDED) {
		t.Fatalf("got %+v; log %q", res, lines)
	}
	if want := jobID + "|main|" + f.seed + "|did things|rework"; !hasLine(lines, want) {
		t.Errorf("no line %q in %q", want, lines)
	}
	c := res.Change.RunChange
	if c.GetBranch() != "main" || c.GetPushed() || c.GetCommits()[0].GetSubject() != "Rework: Polish" {
		t.Errorf("change %v", c)
	}
	if head := must(t, f.remoteGit(), "rev-parse", "main"); head != f.seed {
		t.Errorf("pushed with --no-push: main at %s", head)
	}
}
