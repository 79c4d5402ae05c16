#!/usr/bin/env bash
# prepare-gweb.sh - a private, PHP 8-compatible copy of Debian's ganglia-web for the browser test.
#
#   prepare-gweb.sh DEST GMETAD_PORT RRDS
#
# DEST/www/ganglia     copy of /usr/share/ganglia-webfrontend with php8.patch applied and our
#                      own conf.php (Debian's includes /etc/ganglia-webfrontend/conf.php; ours
#                      includes nothing outside DEST)
# DEST/www/javascript  symlink to /usr/share/javascript (the libjs-* packages the pages load,
#                      what Debian's apache.conf aliases as /javascript)
# DEST/state           ganglia-web's writable state (views, events, Dwoo's compiled templates
#                      and cache), instead of /var/lib/ganglia-web
# DEST/sessions        PHP's session files (ganglia-web starts a session per request)
#
# Serve it with `php -d session.save_path=DEST/sessions -S 127.0.0.1:PORT -t DEST/www` and
# open /ganglia/. GMETAD_PORT is gmetad's interactive_port (ganglia-web asks it for
# /?filter=summary and /cluster/host), RRDS its rrd_rootdir (graph.php runs rrdtool on those
# files). Nothing under /usr or /etc is changed.
set -euo pipefail

die() { echo "prepare-gweb.sh: $*" >&2; exit 1; }
[ $# -eq 3 ] || die "usage: prepare-gweb.sh DEST GMETAD_PORT RRDS"
dest=$1 port=$2 rrds=$3
src=/usr/share/ganglia-webfrontend
here=$(cd "$(dirname "$0")" && pwd)

[ -f "$src/index.php" ] || die "$src missing: install Debian's ganglia-webfrontend (tests/run-all.sh does)"
[ -d /usr/share/javascript/jquery ] || die "/usr/share/javascript/jquery missing: install libjs-jquery"
command -v patch >/dev/null || die "patch not found: install Debian's patch"
[[ "$port" =~ ^[0-9]+$ ]] || die "GMETAD_PORT must be a number, not '$port'"
[ -d "$rrds" ] || die "RRDS '$rrds' is not a directory"
[ ! -e "$dest/www" ] || die "$dest/www exists already"

mkdir -p "$dest/www" "$dest/state/conf" "$dest/state/dwoo/compiled" "$dest/state/dwoo/cache" \
  "$dest/sessions"
cp -a "$src" "$dest/www/ganglia"
ln -s /usr/share/javascript "$dest/www/javascript"
# The package's initial state (default view, empty event lists) when it is there.
if [ -d /var/lib/ganglia-web/conf ]; then
  cp -a /var/lib/ganglia-web/conf/. "$dest/state/conf/"
fi

patch --quiet --forward --no-backup-if-mismatch -p1 -d "$dest/www/ganglia" < "$here/php8.patch" ||
  die "php8.patch does not apply to $src (ganglia-webfrontend version changed?)"

state=$(cd "$dest/state" && pwd)
rrds=$(cd "$rrds" && pwd)
# conf_default.php derives every path from gweb_confdir before conf.php runs, so each derived
# path is set again here. The asset paths are those of Debian's own conf.php.
cat > "$dest/www/ganglia/conf.php" <<EOF
<?php
// Written by gmond-rs's tests/web/prepare-gweb.sh: a private ganglia-web for one test run.
\$conf['gweb_confdir'] = '$state';
\$conf['gmetad_root'] = '$rrds';
\$conf['rrds'] = '$rrds';
\$conf['dwoo_compiled_dir'] = '$state/dwoo/compiled';
\$conf['dwoo_cache_dir'] = '$state/dwoo/cache';
\$conf['views_dir'] = '$state/conf';
\$conf['conf_dir'] = '$state/conf';
\$conf['cachefile'] = '$state/conf/ganglia_metrics.cache';
\$conf['nagios_cache_file'] = '$state/conf/nagios_ganglia.cache';
\$conf['overlay_events_file'] = '$state/conf/events.json';
\$conf['overlay_events_color_map_file'] = '$state/conf/event_color.json';
\$conf['ganglia_ip'] = '127.0.0.1';
\$conf['ganglia_port'] = $port;
\$conf['jquery_js_path'] = "/javascript/jquery/jquery.min.js";
\$conf['jquerymobile_js_path'] = "/javascript/jquery-mobile/jquery.mobile.min.js";
\$conf['jqueryui_js_path'] = "/javascript/jquery-ui/jquery-ui.min.js";
\$conf['jqueryui_smoothness_css_path'] = "/javascript/jquery-ui/themes/base/all.min.css";
\$conf['jquery_scrollTo_js_path'] = "/javascript/jquery-scrollto/jquery.scrollTo.min.js";
\$conf['jquery_cookie_js_path'] = "/javascript/jquery-cookie/jquery.cookie.min.js";
\$conf['rickshaw_js_path'] = "/javascript/rickshaw/rickshaw.min.js";
\$conf['cubism_js_path'] = "/ganglia/js/cubism.v1.min.js";
\$conf['d3_js_path'] = "/javascript/d3/d3.min.js";
\$conf['protovis_js_path'] = "/ganglia/js/protovis.min.js";
\$conf['jstree_js_path'] = "/javascript/jstree/jstree.min.js";
\$conf['jstree_css_path'] = "/javascript/jstree/themes/default/style.css";
\$conf['chosen_js_path'] = "/javascript/chosen/chosen.jquery.min.js";
\$conf['chosen_css_path'] = "/javascript/chosen/chosen.min.css";
\$conf['jstz_js_path'] = "/javascript/jstimezonedetect/jstz.min.js";
\$conf['moment_js_path'] = "/javascript/moment/moment.min.js";
\$conf['moment-timezone_js_path'] = "/javascript/moment-timezone/moment-timezone-with-data.min.js";
\$conf['select2_js_path'] = "/javascript/select2.js/select2.min.js";
\$conf['select2_css_path'] = "/javascript/select2.js/select2.min.css";
\$conf['jquery_visible_js_path'] = "js/jquery.visible.min.js";
\$conf['fullcalendar_js_path'] = "js/fullcalendar.min.js";
\$conf['fullcalendar_css_path'] = "js/fullcalendar.min.css";
\$conf['jquery_flot_base_path'] = "/javascript/jquery-flot/jquery.flot";
EOF
echo "$dest/www"
