# Translates the #cloud-config subset of README.md into shell for the test
# guest: writes OUT/write_files.sh (write_files), OUT/runcmd.sh (runcmd)
# and OUT/hostname (hostname/fqdn). Run as: awk -v out=DIR -f cloudconfig.awk
# Runs under busybox awk; keeps to POSIX awk.

function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t\r]+$/, "", s); return s }
# Shell single-quoting.
function shq(s) { gsub(/'/, "'\\''", s); return "'" s "'" }
# YAML scalar -> string (plain, 'single' or "double" with common escapes).
function yscalar(s,   out, i, c, n) {
    s = trim(s)
    if (s ~ /^'.*'$/) { s = substr(s, 2, length(s) - 2); gsub(/''/, "'", s); return s }
    if (s ~ /^".*"$/) {
        s = substr(s, 2, length(s) - 2)
        out = ""
        n = length(s)
        for (i = 1; i <= n; i++) {
            c = substr(s, i, 1)
            if (c == "\\" && i < n) {
                i++; c = substr(s, i, 1)
                if (c == "n") c = "\n"
                else if (c == "t") c = "\t"
                else if (c == "r") c = "\r"
                else if (c == "0") c = ""
            }
            out = out c
        }
        return out
    }
    sub(/[ \t]+#.*$/, "", s)
    return s
}
# Splits a flow sequence "[a, 'b, c', "d"]" into arr[1..n]; returns n.
function flow_split(s, arr,   n, i, c, q, cur, depth) {
    s = trim(s); sub(/^\[/, "", s); sub(/\][ \t]*$/, "", s)
    n = 0; q = ""; cur = ""; depth = 0
    for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (q != "") {
            if (c == q) q = ""
            else if (c == "\\" && q == "\"") { cur = cur c; i++; c = substr(s, i, 1) }
            cur = cur c
            continue
        }
        if (c == "'" || c == "\"") { q = c; cur = cur c; continue }
        if (c == "[") depth++
        if (c == "]") depth--
        if (c == "," && depth == 0) { if (trim(cur) != "") arr[++n] = trim(cur); cur = ""; continue }
        cur = cur c
    }
    if (trim(cur) != "") arr[++n] = trim(cur)
    return n
}
# A runcmd entry: a string is a shell line, a list is argv (quoted).
function runcmd_add(v,   a, n, i, line) {
    v = trim(v)
    if (v ~ /^\[/) {
        n = flow_split(v, a); line = ""
        for (i = 1; i <= n; i++) line = line (i > 1 ? " " : "") shq(yscalar(a[i]))
        print line > runcmd_sh
    } else if (v != "")
        print yscalar(v) > runcmd_sh
    have_runcmd = 1
}
function wf_flush() {
    if (wf_path != "") {
        printf "mkdir -p \"$(dirname %s)\"\n", shq(wf_path) > wf_sh
        if (wf_enc ~ /^(b64|base64)$/)
            printf "printf '%%s' %s | base64 -d %s %s\n", shq(wf_content), (wf_append ? ">>" : ">"), shq(wf_path) > wf_sh
        else
            printf "printf '%%s' %s %s %s\n", shq(wf_content), (wf_append ? ">>" : ">"), shq(wf_path) > wf_sh
        if (wf_perm != "") printf "chmod %s %s\n", shq(wf_perm), shq(wf_path) > wf_sh
    }
    wf_path = ""; wf_content = ""; wf_perm = ""; wf_enc = ""; wf_append = 0
}
# Stores a finished value for the current item key.
function item_set(key, val) {
    if (section == "write_files") {
        if (key == "path") wf_path = val
        else if (key == "content") wf_content = val
        else if (key == "permissions") wf_perm = val
        else if (key == "encoding") wf_enc = val
        else if (key == "append") wf_append = (val == "true" || val == "yes")
    } else if (section == "runcmd" && key == "-") {
        if (block_raw) { print val > runcmd_sh; have_runcmd = 1 }
        else runcmd_add(val)
    }
}
function block_end(   v) {
    v = block_text
    if (block_style ~ /^>/) { gsub(/\n/, " ", v); sub(/ $/, "\n", v) }
    if (block_style ~ /-$/) sub(/\n+$/, "", v)
    else if (block_style !~ /\+$/) { sub(/\n+$/, "", v); v = v "\n" }
    block_raw = 1
    item_set(block_key, v)
    block_raw = 0
    in_block = 0
}
# "key: value" inside a list item at the item's indentation.
function item_line(body, ind,   key, val) {
    key = body; sub(/:.*/, "", key); key = trim(key)
    val = body; sub(/^[^:]*:/, "", val); val = trim(val)
    if (val ~ /^[|>][-+]?[0-9]?$/) {
        in_block = 1; block_key = key; block_style = val; block_ind = -1
        block_text = ""; block_parent = ind
        return
    }
    item_set(key, yscalar(val))
}
BEGIN {
    wf_sh = out "/write_files.sh"; runcmd_sh = out "/runcmd.sh"
    printf "" > wf_sh
    printf "" > runcmd_sh
    section = ""; in_block = 0; block_raw = 0; have_runcmd = 0
    wf_flush()
}
{
    line = $0
    sub(/\r$/, "", line)
    match(line, /^ */); ind = RLENGTH
    if (in_block) {
        if (line ~ /^[ \t]*$/) { block_text = block_text "\n"; next }
        if (ind > block_parent) {
            if (block_ind < 0) block_ind = ind
            block_text = block_text substr(line, block_ind + 1) "\n"
            next
        }
        block_end()
    }
    if (line ~ /^[ \t]*#/ || line ~ /^[ \t]*$/) next
    body = trim(line)
    if (ind == 0 && body !~ /^-/) {
        if (section == "write_files") wf_flush()
        key = body; sub(/:.*/, "", key)
        val = body; sub(/^[^:]*:/, "", val); val = trim(val)
        section = ""
        if (key == "write_files" || key == "runcmd") {
            section = key
            if (key == "runcmd" && val ~ /^\[/) {
                n = flow_split(val, arr)
                for (i = 1; i <= n; i++) runcmd_add(arr[i])
                section = ""
            }
        } else if (key == "hostname" || (key == "fqdn" && hostname == "")) {
            hostname = yscalar(val)
            if (key == "fqdn") sub(/\..*/, "", hostname)
        }
        next
    }
    if (section == "") next
    if (body ~ /^-([ \t]|$)/) {
        rest = trim(substr(body, 2))
        item_ind = ind + length(body) - length(rest) # column of rest
        if (section == "write_files") {
            wf_flush()
            if (rest != "") item_line(rest, item_ind)
        } else if (section == "runcmd") {
            if (rest ~ /^[|>][-+]?$/) {
                in_block = 1; block_key = "-"; block_style = rest; block_ind = -1
                block_text = ""; block_parent = ind
            } else runcmd_add(rest)
        }
        next
    }
    if (section == "write_files") item_line(body, ind)
}
END {
    if (in_block) block_end()
    if (section == "write_files") wf_flush()
    close(wf_sh); close(runcmd_sh)
    if (!have_runcmd) system("rm -f " shq(runcmd_sh))
    if (hostname != "") { print hostname > (out "/hostname"); close(out "/hostname") }
}
