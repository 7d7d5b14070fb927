; Inno Setup script: the Windows installer of the PyInstaller one-folder app.
; packaging/windows/build.ps1 compiles it with
;   iscc /DAppVersion=X.Y.Z /DBundleDir=...\dist\postroom /DOutputDir=... /DIconFile=... postroom.iss
; Per-user or per-machine (the installer asks), a Start-menu shortcut to the console (the
; windowed postroom-gui.exe: no console window), `postroom` on PATH for the CLI, and an
; uninstaller that removes the program but never the users' databases or keyring entries.

#ifndef AppVersion
  #error Pass /DAppVersion=X.Y.Z
#endif
#ifndef BundleDir
  #error Pass /DBundleDir=path\to\dist\postroom
#endif
#ifndef OutputDir
  #define OutputDir "."
#endif

[Setup]
AppId={{6B0C1C2E-7F0A-4E55-9C8B-3D6F1B0E5A21}
AppName=Postroom
AppVersion={#AppVersion}
AppVerName=Postroom {#AppVersion}
AppPublisher=Postroom
DefaultDirName={autopf}\Postroom
DefaultGroupName=Postroom
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
ChangesEnvironment=yes
OutputDir={#OutputDir}
OutputBaseFilename=postroom-{#AppVersion}-windows-x64-setup
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
UninstallDisplayIcon={app}\postroom-gui.exe
UninstallDisplayName=Postroom {#AppVersion}
#ifdef IconFile
SetupIconFile={#IconFile}
#endif
#ifdef SignTool
; build.ps1 defines SignTool when a code-signing certificate is configured, so the
; installer and its uninstaller are signed too.
SignTool={#SignTool}
SignedUninstaller=yes
#endif

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "addtopath"; Description: "Add the postroom command to PATH"; GroupDescription: "Command line:"

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\Postroom"; Filename: "{app}\postroom-gui.exe"; WorkingDir: "{userdocs}"; Comment: "Desktop console for a self-hosted bulk-email platform"
Name: "{autodesktop}\Postroom"; Filename: "{app}\postroom-gui.exe"; WorkingDir: "{userdocs}"; Tasks: desktopicon

[Registry]
; PATH for the CLI: the user's PATH for a per-user install, the system's for all users.
Root: HKCU; Subkey: "Environment"; ValueType: expandsz; ValueName: "Path"; ValueData: "{olddata};{app}"; Tasks: addtopath; Check: not IsAdminInstallMode and NeedsAddPath(ExpandConstant('{app}'))
Root: HKLM; Subkey: "SYSTEM\CurrentControlSet\Control\Session Manager\Environment"; ValueType: expandsz; ValueName: "Path"; ValueData: "{olddata};{app}"; Tasks: addtopath; Check: IsAdminInstallMode and NeedsAddPath(ExpandConstant('{app}'))

[Run]
Filename: "{app}\postroom-gui.exe"; Description: "{cm:LaunchProgram,Postroom}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; Anything the app wrote next to itself; user data lives in %LOCALAPPDATA%\Postroom and stays.
Type: filesandordirs; Name: "{app}"

[Code]
function NeedsAddPath(Dir: string): Boolean;
var
  Path: string;
  Root: Integer;
  Key: string;
begin
  if IsAdminInstallMode then begin
    Root := HKEY_LOCAL_MACHINE;
    Key := 'SYSTEM\CurrentControlSet\Control\Session Manager\Environment';
  end else begin
    Root := HKEY_CURRENT_USER;
    Key := 'Environment';
  end;
  if not RegQueryStringValue(Root, Key, 'Path', Path) then begin
    Result := True;
    exit;
  end;
  Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Path) + ';') = 0;
end;

procedure RemoveFromPath(Dir: string);
var
  Path: string;
  Root: Integer;
  Key: string;
  P: Integer;
begin
  if IsAdminInstallMode then begin
    Root := HKEY_LOCAL_MACHINE;
    Key := 'SYSTEM\CurrentControlSet\Control\Session Manager\Environment';
  end else begin
    Root := HKEY_CURRENT_USER;
    Key := 'Environment';
  end;
  if not RegQueryStringValue(Root, Key, 'Path', Path) then
    exit;
  P := Pos(';' + Uppercase(Dir), Uppercase(Path));
  if P > 0 then begin
    Delete(Path, P, Length(Dir) + 1);
    RegWriteExpandStringValue(Root, Key, 'Path', Path);
  end;
end;

procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
begin
  if CurUninstallStep = usPostUninstall then
    RemoveFromPath(ExpandConstant('{app}'));
end;
