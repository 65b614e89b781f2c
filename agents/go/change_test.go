package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	pb "agent-jobs/agent-go/generated/agent/v1"
)

// ---- a real git, isolated from the machine's configuration ----

var testAuthor = gitAuthor{Name: "Robo Coder", Email: "robo@example.test"}

// gitTestEnv is an environment in which git reads no user or system configuration.
func gitTestEnv(t *testing.T) []string {
	t.Helper()
	home := t.TempDir()
	env := withoutEnv(os.Environ(), "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL",
		"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "HOME", "XDG_CONFIG_HOME", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM")
	return append(env, "HOME="+home, "XDG_CONFIG_HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+filepath.Join(home, "gitconfig"),
		"GIT_TERMINAL_PROMPT=0")
}

// execGit is a gitFunc that runs git plainly in dir.
func execGit(dir string, env []string) gitFunc {
	return func(stdout io.Writer, args ...string) (int, string, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir, cmd.Env = dir, env
		if stdout == nil {
			stdout = io.Discard
		}
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = stdout, &stderr
		err := cmd.Run()
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return exitErr.ExitCode(), stderr.String(), nil
		}
		if err != nil {
			return -1, "", err
		}
		return 0, stderr.String(), nil
	}
}

// must runs git and returns its trimmed stdout, failing the test on error.
func must(t *testing.T, g gitFunc, args ...string) string {
	t.Helper()
	out, err := gitOutput(g, args...)
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func writeFile(t *testing.T, file string, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fixture is a bare "remote" repository with a seed commit on main, and what a run of a job did to it.
type fixture struct {
	t      *testing.T
	env    []string
	remote string // path of the bare repository
	url    string // file:// URL (a plain path would ignore --depth)
	seed   string // the seed commit
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := t.TempDir()
	f := &fixture{t: t, env: gitTestEnv(t), remote: filepath.Join(root, "remote.git")}
	f.url = "file://" + f.remote
	must(t, execGit(root, f.env), "init", "-q", "--bare", "--initial-branch=main", f.remote)
	seedDir := filepath.Join(root, "seed")
	must(t, execGit(root, f.env), "init", "-q", "--initial-branch=main", seedDir)
	writeFile(t, filepath.Join(seedDir, "README.md"), "# seed\n")
	writeFile(t, filepath.Join(seedDir, ".gitignore"), "*.log\n")
	g := execGit(seedDir, authorEnv(f.env, gitAuthor{Name: "Seed", Email: "seed@example.test"}))
	must(t, g, "add", "--all")
	must(t, g, "commit", "-q", "-m", "seed")
	must(t, g, "push", "-q", f.url, "main")
	f.seed = must(t, g, "rev-parse", "HEAD")
	return f
}

// remoteGit runs git in the bare repository.
func (f *fixture) remoteGit() gitFunc { return execGit(f.remote, f.env) }

// advance adds a commit to branch in the remote (made from its current head) and returns it.
func (f *fixture) advance(branch, file string) string {
	f.t.Helper()
	dir := filepath.Join(f.t.TempDir(), "w")
	g := execGit(filepath.Dir(dir), f.env)
	must(f.t, g, "clone", "-q", "--branch", branch, "--", f.url, dir)
	writeFile(f.t, filepath.Join(dir, file), "more\n")
	g = execGit(dir, authorEnv(f.env, gitAuthor{Name: "Someone", Email: "someone@example.test"}))
	must(f.t, g, "add", "--all")
	must(f.t, g, "commit", "-q", "-m", "someone else's "+file)
	must(f.t, g, "push", "-q", "origin", "HEAD:refs/heads/"+branch)
	return must(f.t, g, "rev-parse", "HEAD")
}

// clone checks out what the job starts from, as the runner does; it returns the clone's git and base.
func (f *fixture) clone(asg *pb.JobAssignment) (dir string, g gitFunc, base, failure string) {
	f.t.Helper()
	asg.Repository = &pb.Repository{Id: "r", Name: "acme/web", CloneUrl: f.url, DefaultBranch: "main"}
	folder := f.t.TempDir()
	dir = filepath.Join(folder, "repo")
	if err := runGit(execGit(folder, f.env), nil, cloneArgs(asg, dir)...); err != nil {
		f.t.Fatalf("clone: %v", err)
	}
	g = execGit(dir, authorEnv(f.env, testAuthor))
	base, _, failure, err := baseCommit(g, asg, func(string) {})
	if err != nil {
		f.t.Fatal(err)
	}
	return dir, g, base, failure
}

// spec is a changeSpec for a run of asg whose lines are collected in said.
func (f *fixture) spec(asg *pb.JobAssignment, base string, said *[]string) changeSpec {
	folder := f.t.TempDir()
	return changeSpec{Asg: asg, Base: base, Cloned: base, BranchPrefix: defaultBranchPrefix, PatchFile: filepath.Join(folder, "run.patch"),
		ResultFile: filepath.Join(folder, "result.json"), Say: func(line string) { *said = append(*said, line) }}
}

const jobID = "0b6f3a52-8d7e-4c1f-9a3b-2e5d6c7f8a90"

func backlogJob(prompt string) *pb.JobAssignment {
	return &pb.JobAssignment{JobId: jobID, Attempt: 1, Prompt: prompt, Queue: pb.JobQueue_JOB_QUEUE_BACKLOG}
}

func reworkJob(prompt, branch, head string) *pb.JobAssignment {
	return &pb.JobAssignment{JobId: "7c9e6679-7425-40de-944b-e07fc1f90ae7", Attempt: 1, Prompt: prompt, Queue: pb.JobQueue_JOB_QUEUE_REWORK,
		RevisesJobId: jobID, Revises: &pb.RevisedChange{Branch: branch, HeadCommit: head, Summary: "did things"}}
}

// ---- tests ----

func TestCommitLeftoversWithTheConfiguredAuthor(t *testing.T) {
	f := newFixture(t)
	asg := backlogJob("  Fix the login form\nso that it validates emails\n")
	dir, g, base, _ := f.clone(asg)
	writeFile(t, filepath.Join(dir, "src", "login.ts"), "export {};\n")
	writeFile(t, filepath.Join(dir, "README.md"), "# seed\nchanged\n")
	writeFile(t, filepath.Join(dir, "debug.log"), "ignored by .gitignore\n")
	if err := commitLeftovers(g, commitMessage(asg)); err != nil {
		t.Fatal(err)
	}
	head := must(t, g, "rev-parse", "HEAD")
	if head == base || must(t, g, "rev-parse", "HEAD~1") != base {
		t.Fatalf("want one commit on %s, head %s", base, head)
	}
	who := must(t, g, "log", "-1", "--format=%an <%ae>|%cn <%ce>")
	if who != "Robo Coder <robo@example.test>|Robo Coder <robo@example.test>" {
		t.Errorf("author and committer: %q", who)
	}
	if msg := must(t, g, "log", "-1", "--format=%B"); msg != "Fix the login form\n\nJob: "+jobID {
		t.Errorf("message: %q", msg)
	}
	if files := must(t, g, "show", "--name-only", "--format=", "HEAD"); files != "README.md\nsrc/login.ts" {
		t.Errorf("committed files: %q", files)
	}
	// Nothing left: no second commit.
	if err := commitLeftovers(g, "again"); err != nil {
		t.Fatal(err)
	}
	if again := must(t, g, "rev-parse", "HEAD"); again != head {
		t.Errorf("a commit with nothing to commit: %s", again)
	}
}

func TestAuthorEnvKeepsTheAgentsOwn(t *testing.T) {
	env := authorEnv([]string{"PATH=/bin", "GIT_AUTHOR_NAME=Mine"}, testAuthor)
	want := []string{"PATH=/bin", "GIT_AUTHOR_NAME=Mine", "GIT_AUTHOR_EMAIL=robo@example.test", "GIT_COMMITTER_NAME=Robo Coder", "GIT_COMMITTER_EMAIL=robo@example.test"}
	if strings.Join(env, "\n") != strings.Join(want, "\n") {
		t.Errorf("got %q", env)
	}
}

func TestCommitMessage(t *testing.T) {
	long := strings.Repeat("é", 80)
	cases := []struct {
		asg  *pb.JobAssignment
		want string
	}{
		{backlogJob("Add a button"), "Add a button"},
		{backlogJob("\n\n  Trim me  \r\nbody"), "Trim me"},
		{backlogJob(long), strings.Repeat("é", 72)},
		{backlogJob("   "), "agent job"},
		{reworkJob("Rename it back", "b", "h"), "Rework: Rename it back"},
		{reworkJob("", "", ""), "Rework: agent job"},
	}
	for _, c := range cases {
		if got := commitMessage(c.asg); got != c.want+"\n\nJob: "+c.asg.GetJobId() {
			t.Errorf("%q: got %q", c.asg.GetPrompt(), got)
		}
	}
}

func TestNoChange(t *testing.T) {
	f := newFixture(t)
	asg := backlogJob("look, do not touch")
	dir, g, base, _ := f.clone(asg)
	writeFile(t, filepath.Join(dir, "out.log"), "ignored\n")
	var said []string
	spec := f.spec(asg, base, &said)
	writeFile(t, spec.ResultFile, `{"summary": "Nothing to do.", "extra": 1}`)
	change, err := makeChange(g, spec)
	if err != nil {
		t.Fatal(err)
	}
	want := &pb.RunChange{BaseCommit: f.seed, HeadCommit: f.seed, Commits: []*pb.Commit{}, DiffStat: &pb.DiffStat{}, Summary: "Nothing to do."}
	if change.String() != want.String() {
		t.Errorf("got %v\nwant %v", change, want)
	}
	if branches := must(t, f.remoteGit(), "branch", "--list"); branches != "* main" {
		t.Errorf("remote branches after a run that changed nothing: %q", branches)
	}
	if _, err := os.Stat(spec.PatchFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a patch file for no change: %v", err)
	}
}

func TestChangeBranch(t *testing.T) {
	cases := []struct {
		asg    *pb.JobAssignment
		prefix string
		branch string
		rework bool
	}{
		{backlogJob("x"), "agent-jobs/", "agent-jobs/" + jobID, false},
		{backlogJob("x"), "", jobID, false},
		{reworkJob("x", "agent-jobs/parent", "abc"), "agent-jobs/", "agent-jobs/parent", true},
		{reworkJob("x", "", ""), "bots/", "bots/7c9e6679-7425-40de-944b-e07fc1f90ae7", false},
	}
	for _, c := range cases {
		branch, rework := changeBranch(c.asg, c.prefix)
		if branch != c.branch || rework != c.rework {
			t.Errorf("%s %q: got %s rework=%v", c.asg.GetJobId(), c.prefix, branch, rework)
		}
	}
	if got := strings.Join(pushArgs("a/b", false, "abc", jobID), " "); got != "push --force origin HEAD:refs/heads/a/b" {
		t.Errorf("backlog push: %s", got)
	}
	want := "push --atomic --force-with-lease=refs/heads/a/b:abc origin HEAD:refs/heads/a/b +HEAD:refs/agent-jobs/" + jobID
	if got := strings.Join(pushArgs("a/b", true, "abc", jobID), " "); got != want {
		t.Errorf("rework push: %s", got)
	}
}

func TestParseNumstat(t *testing.T) {
	cases := map[string][2]uint64{
		"3\t1\tsrc/a.ts":                {3, 1},
		"-\t-\tlogo.png":                {0, 0},
		"0\t12\tdocs/{old => new}/x.md": {0, 12},
		"5\t0\t\"tab\\there.txt\"":      {5, 0},
		"7\t2\tpath\twith\ttabs":        {7, 2},
		"garbage":                       {0, 0},
	}
	for line, want := range cases {
		a, d := parseNumstat([]byte(line))
		if a != want[0] || d != want[1] {
			t.Errorf("%q: got %d %d", line, a, d)
		}
	}
}

func TestPushedChangeWithCommitsStatAndPatch(t *testing.T) {
	f := newFixture(t)
	asg := backlogJob("Add things")
	dir, g, base, _ := f.clone(asg)
	// One commit of the command's own, then leftovers (text, binary, a deletion, non-UTF-8 bytes).
	writeFile(t, filepath.Join(dir, "first.txt"), "one\ntwo\n")
	must(t, g, "add", "first.txt")
	must(t, g, "commit", "-q", "-m", "First\ttabbed subject\n\nwith a body")
	writeFile(t, filepath.Join(dir, "logo.png"), "\x89PNG\r\n\x1a\n\x00\x00\x00binary")
	writeFile(t, filepath.Join(dir, "latin1.txt"), "caf\xe9\n")
	if err := os.Remove(filepath.Join(dir, ".gitignore")); err != nil {
		t.Fatal(err)
	}
	var said []string
	spec := f.spec(asg, base, &said)
	writeFile(t, spec.ResultFile, `{"summary": "Added **things**.", "pullRequestUrl": "https://git.example/acme/web/pull/7"}`)
	change, err := makeChange(g, spec)
	if err != nil {
		t.Fatal(err)
	}
	head := must(t, g, "rev-parse", "HEAD")
	branch := "agent-jobs/" + jobID
	if change.Branch != branch || !change.Pushed || change.BaseCommit != base || change.HeadCommit != head {
		t.Fatalf("change: %v", change)
	}
	if got := must(t, f.remoteGit(), "rev-parse", "refs/heads/"+branch); got != head {
		t.Errorf("remote %s at %s, want %s", branch, got, head)
	}
	if change.CommitCount != 2 || len(change.Commits) != 2 || change.Commits[0].Subject != "First\ttabbed subject" ||
		change.Commits[1].Subject != "Add things" || change.Commits[1].Sha != head || change.Commits[0].Sha != must(t, g, "rev-parse", "HEAD~1") {
		t.Errorf("commits: %d %v", change.CommitCount, change.Commits)
	}
	// first.txt +2, latin1.txt +1, .gitignore -1, logo.png binary.
	if s := change.DiffStat; s.FilesChanged != 4 || s.Insertions != 3 || s.Deletions != 1 {
		t.Errorf("diff stat: %v", s)
	}
	if change.Summary != "Added **things**." || change.PullRequestUrl != "https://git.example/acme/web/pull/7" {
		t.Errorf("result file: %q %q", change.Summary, change.PullRequestUrl)
	}
	// The patch is byte for byte what git diff prints, and applies to base to make head's tree.
	patch, err := os.ReadFile(spec.PatchFile)
	if err != nil {
		t.Fatal(err)
	}
	var direct bytes.Buffer
	if err := runGit(g, &direct, append(append([]string{"-c", "core.quotePath=true", "diff", "--binary"}, pinnedDiffOptions...), base, head)...); err != nil {
		t.Fatal(err)
	}
	if uint64(len(patch)) != change.PatchSize || !bytes.Equal(patch, direct.Bytes()) || !bytes.Contains(patch, []byte("GIT binary patch")) ||
		!bytes.Contains(patch, []byte("caf\xe9")) {
		t.Fatalf("patch of %d bytes (size %d) differs from git diff's %d", len(patch), change.PatchSize, direct.Len())
	}
	must(t, g, "checkout", "-q", "--detach", base)
	must(t, g, "apply", "--index", spec.PatchFile)
	if tree, want := must(t, g, "write-tree"), must(t, g, "rev-parse", head+"^{tree}"); tree != want {
		t.Errorf("base + patch is tree %s, head's is %s", tree, want)
	}
	if last := said[len(said)-1]; !strings.HasPrefix(last, "change on "+branch+": 2 commit(s), 4 file(s) changed, +3 -1, patch of ") {
		t.Errorf("log: %q", said)
	}
	if said[0] != "$ git push --force origin HEAD:refs/heads/"+branch {
		t.Errorf("log: %q", said)
	}
}

func TestBacklogPushReplacesAnEarlierAttempt(t *testing.T) {
	f := newFixture(t)
	branch := "agent-jobs/" + jobID
	for attempt, file := range []string{"one.txt", "two.txt"} {
		asg := backlogJob("try")
		asg.Attempt = uint32(attempt + 1)
		dir, g, base, _ := f.clone(asg)
		writeFile(t, filepath.Join(dir, file), file+"\n")
		var said []string
		change, err := makeChange(g, f.spec(asg, base, &said))
		if err != nil {
			t.Fatalf("attempt %d: %v (%q)", attempt+1, err, said)
		}
		if got := must(t, f.remoteGit(), "rev-parse", "refs/heads/"+branch); got != change.HeadCommit {
			t.Errorf("attempt %d: remote branch at %s, want %s", attempt+1, got, change.HeadCommit)
		}
	}
}

func TestNoPushReportsTheBranchItWouldHavePushed(t *testing.T) {
	f := newFixture(t)
	asg := backlogJob("local only")
	dir, g, base, _ := f.clone(asg)
	writeFile(t, filepath.Join(dir, "x.txt"), "x\n")
	var said []string
	spec := f.spec(asg, base, &said)
	spec.NoPush = true
	change, err := makeChange(g, spec)
	if err != nil {
		t.Fatal(err)
	}
	if change.Branch != "agent-jobs/"+jobID || change.Pushed || change.CommitCount != 1 || change.PatchSize == 0 {
		t.Errorf("change: %v", change)
	}
	if branches := must(t, f.remoteGit(), "branch", "--list"); branches != "* main" {
		t.Errorf("pushed with --no-push: %q", branches)
	}
}

func TestPushRefusedByTheRemote(t *testing.T) {
	f := newFixture(t)
	hook := filepath.Join(f.remote, "hooks", "pre-receive")
	writeFile(t, hook, "#!/bin/sh\necho 'no agents here' >&2\nexit 1\n")
	if err := os.Chmod(hook, 0o755); err != nil {
		t.Fatal(err)
	}
	asg := backlogJob("try")
	dir, g, base, _ := f.clone(asg)
	writeFile(t, filepath.Join(dir, "x.txt"), "x\n")
	var said []string
	_, err := makeChange(g, f.spec(asg, base, &said))
	var failure *changeFailure
	want := "push failed: ! [remote rejected] HEAD -> agent-jobs/" + jobID + " (pre-receive hook declined)"
	if !errors.As(err, &failure) || failure.Reason != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}

func TestPushFailure(t *testing.T) {
	cases := map[string]string{
		"To file:///r\n ! [rejected]        HEAD -> b (non-fast-forward)\nerror: failed to push some refs to 'file:///r'\n":      "! [rejected]        HEAD -> b (non-fast-forward)",
		"fatal: could not read Username for 'https://h': terminal prompts disabled\n":                                            "fatal: could not read Username for 'https://h': terminal prompts disabled",
		"error: atomic push failed for ref refs/heads/b. status: 7\nTo file:///r\n ! [rejected]        HEAD -> b (stale info)\n": "! [rejected]        HEAD -> b (stale info)",
		"remote: something\nremote: went wrong\n":                                                                                "remote: went wrong",
		"": "",
	}
	for in, want := range cases {
		if got := pushFailure(in); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

func TestReworkContinuesTheParentsBranch(t *testing.T) {
	f := newFixture(t)
	// The parent's run: a change on its own branch.
	parent := backlogJob("Make it")
	dir, g, base, _ := f.clone(parent)
	writeFile(t, filepath.Join(dir, "made.txt"), "made\n")
	var said []string
	parentChange, err := makeChange(g, f.spec(parent, base, &said))
	if err != nil {
		t.Fatal(err)
	}
	asg := reworkJob("Make it better", parentChange.Branch, parentChange.HeadCommit)
	dir, g, base, failure := f.clone(asg)
	if cloned := strings.Join(cloneArgs(asg, "/r"), " "); cloned != "clone --branch "+parentChange.Branch+" --depth 1 -- "+f.url+" /r" {
		t.Errorf("clone: %s", cloned)
	}
	if failure != "" || base != parentChange.HeadCommit {
		t.Fatalf("rework starts at %s (%q), want the parent's head %s", base, failure, parentChange.HeadCommit)
	}
	writeFile(t, filepath.Join(dir, "made.txt"), "made better\n")
	change, err := makeChange(g, f.spec(asg, base, &said))
	if err != nil {
		t.Fatal(err)
	}
	if change.Branch != parentChange.Branch || !change.Pushed || change.CommitCount != 1 || change.Commits[0].Subject != "Rework: Make it better" {
		t.Errorf("change: %v", change)
	}
	if got := must(t, f.remoteGit(), "rev-parse", "refs/heads/"+change.Branch); got != change.HeadCommit {
		t.Errorf("remote branch at %s, want %s", got, change.HeadCommit)
	}
	if got := must(t, g, "log", "-1", "--format=%B"); got != "Rework: Make it better\n\nJob: "+asg.GetJobId() {
		t.Errorf("message %q", got)
	}
}

func TestReworkPushIsAFastForwardOnly(t *testing.T) {
	f := newFixture(t)
	asg := reworkJob("again", "main", f.seed)
	dir, g, base, failure := f.clone(asg)
	if failure != "" {
		t.Fatal(failure)
	}
	moved := f.advance("main", "theirs.txt") // someone pushes while the rework runs
	writeFile(t, filepath.Join(dir, "mine.txt"), "mine\n")
	var said []string
	_, err := makeChange(g, f.spec(asg, base, &said))
	var failed *changeFailure
	if !errors.As(err, &failed) || !strings.HasPrefix(failed.Reason, "push failed: ! [rejected]") {
		t.Fatalf("got %v", err)
	}
	if got := must(t, f.remoteGit(), "rev-parse", "refs/heads/main"); got != moved {
		t.Errorf("main was overwritten: %s, want %s", got, moved)
	}
}

func TestReworkRetriedAfterItsLostPushReplacesThatPush(t *testing.T) {
	f := newFixture(t)
	asg := reworkJob("again", "main", f.seed)
	// An earlier attempt of this job pushed, marker and all, and was lost before it reported.
	lost := f.advance("main", "lost.txt")
	must(t, f.remoteGit(), "update-ref", pushMarkerRef(asg.GetJobId()), lost)
	dir, g, base, failure := f.clone(asg)
	if failure != "" || base != f.seed {
		t.Fatalf("got base %s %q, want the parent's head %s", base, failure, f.seed)
	}
	if _, err := os.Stat(filepath.Join(dir, "lost.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the clone still has the lost attempt's file: %v", err)
	}
	writeFile(t, filepath.Join(dir, "mine.txt"), "mine\n")
	var said []string
	spec := f.spec(asg, base, &said)
	spec.Cloned = lost
	change, err := makeChange(g, spec)
	if err != nil {
		t.Fatal(err)
	}
	head := must(t, f.remoteGit(), "rev-parse", "refs/heads/main")
	if change.GetBaseCommit() != f.seed || change.GetHeadCommit() != head || change.GetCommitCount() != 1 {
		t.Errorf("change %v, main at %s", change, head)
	}
	if marker := must(t, f.remoteGit(), "rev-parse", pushMarkerRef(asg.GetJobId())); marker != head {
		t.Errorf("marker at %s, main at %s", marker, head)
	}
	if code, _, _ := f.remoteGit()(nil, "merge-base", "--is-ancestor", lost, head); code == 0 {
		t.Errorf("the lost attempt's commit %s is still on main", lost)
	}
}

func TestReworkOnABranchMovedPastItsOwnLostPush(t *testing.T) {
	f := newFixture(t)
	asg := reworkJob("again", "main", f.seed)
	lost := f.advance("main", "lost.txt")
	must(t, f.remoteGit(), "update-ref", pushMarkerRef(asg.GetJobId()), lost)
	moved := f.advance("main", "theirs.txt") // someone built on it since
	_, _, base, failure := f.clone(asg)
	want := fmt.Sprintf("branch moved: main is at %s, the job revises %s", moved, f.seed)
	if base != moved || failure != want {
		t.Errorf("got %s %q, want %q", base, failure, want)
	}
}

func TestReworkOnABranchThatMoved(t *testing.T) {
	f := newFixture(t)
	moved := f.advance("main", "other.txt")
	asg := reworkJob("again", "main", f.seed)
	_, _, base, failure := f.clone(asg)
	want := fmt.Sprintf("branch moved: main is at %s, the job revises %s", moved, f.seed)
	if base != moved || failure != want {
		t.Errorf("got %s %q, want %q", base, failure, want)
	}
}

func TestReworkOfAParentThatChangedNothingStartsFromTheDefaultBranch(t *testing.T) {
	f := newFixture(t)
	asg := reworkJob("do it this time", "", f.seed)
	moved := f.advance("main", "other.txt")
	dir, g, base, failure := f.clone(asg)
	if cloned := strings.Join(cloneArgs(asg, "/r"), " "); cloned != "clone --branch main --depth 1 -- "+f.url+" /r" {
		t.Errorf("clone: %s", cloned)
	}
	if failure != "" || base != moved {
		t.Fatalf("got %s %q, want the default branch's head %s", base, failure, moved)
	}
	writeFile(t, filepath.Join(dir, "x.txt"), "x\n")
	var said []string
	change, err := makeChange(g, f.spec(asg, base, &said))
	if err != nil {
		t.Fatal(err)
	}
	if change.Branch != "agent-jobs/"+asg.GetJobId() || !change.Pushed {
		t.Errorf("change: %v", change)
	}
	env := strings.Join(parentEnv(asg), "\n")
	if env != "JOB_PARENT_ID="+jobID+"\nJOB_PARENT_BRANCH=\nJOB_PARENT_HEAD="+f.seed+"\nJOB_PARENT_SUMMARY=did things" {
		t.Errorf("parent env: %q", env)
	}
	if parentEnv(backlogJob("x")) != nil {
		t.Errorf("a backlog job has parent env")
	}
}

func TestManyCommitsListTheFirst250(t *testing.T) {
	f := newFixture(t)
	asg := backlogJob("many")
	dir, g, base, _ := f.clone(asg)
	// 260 commits in one fast-import, subjects with a tab, invalid UTF-8 and a two-line first paragraph.
	var stream bytes.Buffer
	for i := 1; i <= 260; i++ {
		msg := fmt.Sprintf("commit %d", i)
		switch i {
		case 1:
			msg = "caf\xe9\tand tab\n\nbody"
		case 2:
			msg = "two\nlines"
		}
		fmt.Fprintf(&stream, "commit refs/heads/many\nmark :%d\ncommitter A <a@b> %d +0000\ndata %d\n%s\n", i, 1700000000+i, len(msg), msg)
		if i == 1 {
			fmt.Fprintf(&stream, "from %s\n", base)
		}
		fmt.Fprintf(&stream, "M 644 inline f%d.txt\ndata 2\n%d\n\n", i%7, i%10)
	}
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir, cmd.Env, cmd.Stdin = dir, f.env, &stream
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fast-import: %v %s", err, out)
	}
	head := must(t, g, "rev-parse", "refs/heads/many")
	count, commits, err := listCommits(g, base, head)
	if err != nil {
		t.Fatal(err)
	}
	if count != 260 || len(commits) != 250 {
		t.Fatalf("got %d commits, %d listed", count, len(commits))
	}
	if commits[0].Subject != "caf\uFFFD\tand tab" || commits[1].Subject != "two lines" || commits[249].Subject != "commit 250" {
		t.Errorf("subjects: %q %q %q", commits[0].Subject, commits[1].Subject, commits[249].Subject)
	}
	if commits[249].Sha != must(t, g, "rev-parse", head+"~10") {
		t.Errorf("the 250th is %s", commits[249].Sha)
	}
}

func TestDiffStatCountsBinaryFilesWithoutLines(t *testing.T) {
	f := newFixture(t)
	dir, g, base, _ := f.clone(backlogJob("x"))
	writeFile(t, filepath.Join(dir, "a.bin"), "\x00\x01\x02")
	writeFile(t, filepath.Join(dir, "b.txt"), "1\n2\n3\n")
	writeFile(t, filepath.Join(dir, "README.md"), "# changed\n")
	if err := commitLeftovers(g, "m"); err != nil {
		t.Fatal(err)
	}
	stat, err := diffStat(g, base, must(t, g, "rev-parse", "HEAD"))
	if err != nil {
		t.Fatal(err)
	}
	if stat.FilesChanged != 3 || stat.Insertions != 4 || stat.Deletions != 1 {
		t.Errorf("got %v", stat)
	}
}

func TestReadResultFile(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		content string // "" : no file
		want    runReport
		note    string
	}{
		{"", runReport{}, ""},
		{`{"summary": "Did it.", "pullRequestUrl": "http://h/pr/1", "other": [1]}`, runReport{"Did it.", "http://h/pr/1"}, ""},
		{`{"summary": null}`, runReport{}, ""},
		{`{}`, runReport{}, ""},
		{`not json`, runReport{}, "ignoring the result file: invalid JSON: invalid character 'o' in literal null (expecting 'u')"},
		{`[1, 2]`, runReport{}, "ignoring the result file: it is not a JSON object"},
		{`null`, runReport{}, "ignoring the result file: it is not a JSON object"},
		{`{"summary": 5, "pullRequestUrl": "https://h/p"}`, runReport{}, "ignoring the result file: summary is not a string"},
		{`{"pullRequestUrl": true}`, runReport{}, "ignoring the result file: pullRequestUrl is not a string"},
		{`{"summary": "ok", "pullRequestUrl": "ftp://h/p"}`, runReport{Summary: "ok"}, `ignoring the result file's pullRequestUrl: "ftp://h/p" is not an absolute http or https URL`},
		{`{"summary": "ok", "pullRequestUrl": "/relative"}`, runReport{Summary: "ok"}, `ignoring the result file's pullRequestUrl: "/relative" is not an absolute http or https URL`},
	}
	for i, c := range cases {
		file := filepath.Join(dir, fmt.Sprintf("r%d.json", i))
		if c.content != "" {
			writeFile(t, file, c.content)
		}
		got, note := readResultFile(file)
		if got != c.want || note != c.note {
			t.Errorf("%s: got %+v %q, want %+v %q", c.content, got, note, c.want, c.note)
		}
	}
	// A summary is cut to what the server keeps.
	file := filepath.Join(dir, "long.json")
	writeFile(t, file, `{"summary": "`+strings.Repeat("ü", maxSummaryChars+10)+`"}`)
	if got, _ := readResultFile(file); got.Summary != strings.Repeat("ü", maxSummaryChars) {
		t.Errorf("summary of %d characters", len([]rune(got.Summary)))
	}
}

func TestEachLineCutsLongLines(t *testing.T) {
	var got []string
	input := "short\n" + strings.Repeat("x", 100_000) + "\nlast"
	if err := eachLine(strings.NewReader(input), 10, func(b []byte) { got = append(got, string(b)) }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "|") != "short|xxxxxxxxxx|last" {
		t.Errorf("got %q", got)
	}
}
