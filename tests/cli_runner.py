"""Running `nafp` in-process in tests: exit code, stdout and stderr of one command."""

from nafp_jax import cli


def run_cli(capsys, *argv):
  code = cli.main([str(a) for a in argv])
  out = capsys.readouterr()
  return code, out.out, out.err
