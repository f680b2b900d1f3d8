/*
 * privdrop — the start-up steps a daemon takes between binding its listeners as
 * root and doing its work as a service user: creating its data folder and giving
 * it, with the files at its top level, to that user before becoming it. Shared by
 * lazaretd and lazaret-gw, so both follow the same rules.
 * Not for: binding sockets, reading configuration or deciding which user to run as.
 */
#ifndef LAZARET_PRIVDROP_H
#define LAZARET_PRIVDROP_H

/*
 * mkdir -p: creates path and its missing parents (parents 0755, the last
 * component 0700); folders that already exist are left as they are. 0, or a
 * negative errno (a component that cannot be created, or exists and is not a
 * folder: -ENOTDIR).
 */
int privdrop_make_dirs(const char *path);

/*
 * Started as root (effective uid 0): gives data_dir and the entries directly in
 * it to user, then becomes that user (its group only, no supplementary groups)
 * for good. When user does not exist (a development machine) it logs
 * "<who>.privdrop_skipped" and keeps the current identity. Not root: does
 * nothing. who names the program in the log events ("manager", "gw").
 * 0, or a negative errno when ownership or identity could not be changed.
 * Panics if root could be regained after the drop.
 */
int privdrop_to_user(const char *who, const char *user, const char *data_dir);

#endif
