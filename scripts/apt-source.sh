# Reads this machine's own Debian apt sources, so that no mirror's host name
# is written into the repository. Sourced by .ci/run and
# scripts/build-images.sh (bash).
#
#   debian_codename            the release's codename (bookworm), from /etc/os-release
#   debian_source_for SUITE    the machine's main Debian source entry with its
#                              suite changed to SUITE, in the same format
#                              (deb822 stanza or one-line `deb`); prints
#                              nothing if there is none
#   debian_mirror              the URI of that main entry (e.g. for debootstrap)
#   debian_source_format       deb822 or list: which of the two was found

APT_SOURCES_DIR=${APT_SOURCES_DIR:-/etc/apt}

debian_codename() {
  (. /etc/os-release && printf '%s\n' "${VERSION_CODENAME:-}")
}

# The deb822 files, the distribution's own first.
_deb822_files() {
  local file
  for file in "$APT_SOURCES_DIR"/sources.list.d/debian.sources "$APT_SOURCES_DIR"/sources.list.d/*.sources; do
    [[ -f $file ]] && printf '%s\n' "$file"
  done | awk '!seen[$0]++'
}

# The first deb822 stanza (Types: deb) whose Suites holds the codename itself,
# printed with Suites replaced by $1 (or unchanged when $1 is empty).
_deb822_stanza() {
  local suite=$1 codename file
  codename=$(debian_codename)
  while read -r file; do
    awk -v suite="$suite" -v codename="$codename" '
      BEGIN { RS = ""; FS = "\n" }
      {
        main = 0; deb = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^Suites:/ && index(" " substr($i, 8) " ", " " codename " ") > 0) main = 1
          if ($i ~ /^Types:/ && index(" " substr($i, 7) " ", " deb ") > 0) deb = 1
        }
        if (main && deb) {
          for (i = 1; i <= NF; i++) {
            if ($i ~ /^#/) continue
            if ($i ~ /^Suites:/ && suite != "") print "Suites: " suite
            else if ($i ~ /^Types:/) print "Types: deb"
            else print $i
          }
          found = 1
          exit
        }
      }
      END { exit found ? 0 : 1 }' "$file" && return 0
  done < <(_deb822_files)
  return 1
}

# The first one-line `deb` entry for the codename, with its suite replaced.
_list_line() {
  local suite=$1 codename file
  codename=$(debian_codename)
  for file in "$APT_SOURCES_DIR"/sources.list "$APT_SOURCES_DIR"/sources.list.d/*.list; do
    [[ -f $file ]] || continue
    awk -v suite="$suite" -v codename="$codename" '
      $1 == "deb" {
        n = 2
        if ($2 ~ /^\[/) { while (n <= NF && $n !~ /\]$/) n++; n++ }
        if ($(n + 1) == codename) {
          if (suite != "") $(n + 1) = suite
          print; found = 1; exit
        }
      }
      END { exit found ? 0 : 1 }' "$file" && return 0
  done
  return 1
}

debian_source_format() {
  if _deb822_stanza "" >/dev/null; then echo deb822
  elif _list_line "" >/dev/null; then echo list
  fi
}

debian_source_for() {
  _deb822_stanza "$1" || _list_line "$1" || true
}

debian_mirror() {
  local entry
  if entry=$(_deb822_stanza ""); then
    awk '/^URIs:/ { print $2; exit }' <<<"$entry"
  elif entry=$(_list_line ""); then
    awk '{ n = 2; if ($2 ~ /^\[/) { while (n <= NF && $n !~ /\]$/) n++; n++ } print $n; exit }' <<<"$entry"
  fi
}
